/*
 * The fast path of src/json-scan.ts, compiled to WebAssembly (see build.sh): validate a JSON text,
 * compact it in place, and note where the AdmissionReview's few keys are.
 *
 * It only ever answers "valid, and here is what I found" or "not on the fast path". Every error,
 * every tracked key spelled with escapes and every duplicate of a tracked key is handed back to
 * the TypeScript scanner, which decides and words the message; so this file has one job, to agree
 * with json-scan.ts on every text it accepts (test/json-scan.test.ts checks both on the same inputs).
 *
 * Strings, most of a Kubernetes object, are skipped 16 bytes at a time with SIMD compares.
 * UTF-8 is not validated here: a text with bytes >= 0x80 is flagged and the caller checks it.
 */
#include <stdint.h>
#include <wasm_simd128.h>

/* Same limit as MAX_DEPTH in json-scan.ts. */
#define MAX_DEPTH 10000

/* What scan() returns. */
#define FAST_OK 0
#define FAST_FALLBACK 1

/* Layout of result[]; mirrored in json-scan-wasm.ts. Spans are in compact coordinates, -1 if absent. */
enum {
  R_COMPACT_LEN,
  R_CHANGED, /* 1 if whitespace inside the value was removed: the compact text is in the buffer */
  R_IS_OBJECT,
  R_REQUEST_IS_OBJECT,
  R_HIGH_BYTES, /* 1 if some byte >= 0x80 was seen (the caller validates UTF-8) */
  R_KIND_START,
  R_KIND_END,
  R_API_VERSION_START,
  R_API_VERSION_END,
  R_TIMESTAMP_START,
  R_TIMESTAMP_END,
  R_UID_START,
  R_UID_END,
  R_VALUE_START, /* unchanged: where the compact text starts in the input (leading whitespace skipped) */
  R_COUNT
};

int32_t result[R_COUNT];
static uint8_t stack[MAX_DEPTH + 1];

/* Where the caller copies the input; the memory past it is free. */
extern unsigned char __heap_base;
unsigned char *input_buffer(void) { return &__heap_base; }
int32_t *result_buffer(void) { return result; }

#define IN_OBJECT 1
#define IN_ARRAY 2

enum { K_OTHER, K_KIND, K_API_VERSION, K_REQUEST, K_TIMESTAMP, K_UID };

static inline int is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static inline int is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int equals(const uint8_t *a, const uint8_t *end, const char *word, int len) {
  if (end - a != len) return 0;
  for (int k = 0; k < len; k++)
    if (a[k] != (uint8_t)word[k]) return 0;
  return 1;
}

static int saw_high;
static int saw_escape;

/*
 * Scans a string body from p (just past the opening quote). Returns the closing quote, or 0 on any
 * error. Sets saw_escape if the string holds a backslash.
 */
static const uint8_t *scan_string(const uint8_t *p, const uint8_t *end) {
  const v128_t quote = wasm_i8x16_splat('"');
  const v128_t backslash = wasm_i8x16_splat('\\');
  const v128_t space = wasm_i8x16_splat(0x20);
  saw_escape = 0;
  for (;;) {
    while (end - p >= 16) {
      v128_t v = wasm_v128_load(p);
      v128_t stop = wasm_v128_or(wasm_v128_or(wasm_i8x16_eq(v, quote), wasm_i8x16_eq(v, backslash)),
                                 wasm_u8x16_lt(v, space));
      uint32_t mask = wasm_i8x16_bitmask(stop);
      if (mask) {
        uint32_t before = mask & -mask; /* lowest stop byte */
        /* High bytes before the stop byte belong to this string. */
        if (wasm_i8x16_bitmask(v) & (before - 1)) saw_high = 1;
        p += __builtin_ctz(mask);
        break;
      }
      if (wasm_i8x16_bitmask(v)) saw_high = 1;
      p += 16;
    }
    while (p < end) {
      uint8_t c = *p;
      if (c == '"' || c == '\\' || c < 0x20) break;
      if (c >= 0x80) saw_high = 1;
      p++;
    }
    if (p >= end) return 0;
    uint8_t c = *p;
    if (c == '"') return p;
    if (c < 0x20) return 0;
    /* A backslash. */
    if (end - p < 2) return 0;
    uint8_t e = p[1];
    saw_escape = 1;
    if (e == 'u') {
      if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5])) return 0;
      p += 6;
    } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
               e == 't') {
      p += 2;
    } else {
      return 0;
    }
  }
}

/* Scans a number from p; returns the byte past it, or 0. */
static const uint8_t *scan_number(const uint8_t *p, const uint8_t *end) {
  if (p < end && *p == '-') p++;
  if (p >= end) return 0;
  if (*p == '0') {
    p++;
  } else if (is_digit(*p)) {
    while (p < end && is_digit(*p)) p++;
  } else {
    return 0;
  }
  if (p < end && *p == '.') {
    p++;
    const uint8_t *d = p;
    while (p < end && is_digit(*p)) p++;
    if (p == d) return 0;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    const uint8_t *d = p;
    while (p < end && is_digit(*p)) p++;
    if (p == d) return 0;
  }
  return p;
}

static const uint8_t *scan_literal(const uint8_t *p, const uint8_t *end, const char *word, int len) {
  if (end - p < len) return 0;
  for (int k = 0; k < len; k++)
    if (p[k] != (uint8_t)word[k]) return 0;
  return p + len;
}

/* Parser states, as in json-scan.ts. */
enum { S_VALUE, S_VALUE_OR_CLOSE, S_KEY_OR_CLOSE, S_KEY, S_COLON, S_AFTER_VALUE };

/*
 * Scans the n bytes at input_buffer(). On FAST_OK result[] says what was found and, if R_CHANGED,
 * the compact text is at the start of the buffer; on FAST_FALLBACK the buffer's content is unspecified.
 */
int32_t scan(int32_t n) {
  uint8_t *const base = input_buffer();
  const uint8_t *const end = base + n;
  const uint8_t *p = base;
  saw_high = 0;
  while (p < end && is_ws(*p)) p++;
  if (p == end) return FAST_FALLBACK;
  const uint8_t *const value_start = p;

  /* Compaction in place: bytes [copy_from, p) are moved down to out when whitespace is met. */
  uint8_t *out = base;
  const uint8_t *copy_from = value_start;
  int32_t removed = (int32_t)(value_start - base);
  int changed = 0;

  int depth = 0;
  int state = S_VALUE;
  const int is_object = *value_start == '{';

  int pending_key = K_OTHER;
  int seen = 0;
  int request_depth = 0;
  int request_is_object = 0;
  int track_key = K_OTHER;
  int track_depth = 0;
  int32_t track_start = -1;
  int32_t spans[6][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
  const uint8_t *value_end = 0;

  for (;;) {
    if (state == S_AFTER_VALUE) {
      if (track_key != K_OTHER && depth == track_depth) {
        spans[track_key][0] = track_start;
        spans[track_key][1] = (int32_t)(p - base) - removed;
        track_key = K_OTHER;
      }
      if (depth == 0) {
        value_end = p;
        break;
      }
    }
    if (p < end && is_ws(*p)) {
      const uint8_t *ws_start = p;
      while (p < end && is_ws(*p)) p++;
      int32_t run = (int32_t)(ws_start - copy_from);
      if (out != copy_from) __builtin_memmove(out, copy_from, run);
      out += run;
      copy_from = p;
      removed += (int32_t)(p - ws_start);
      changed = 1;
    }
    if (p >= end) return FAST_FALLBACK;
    const uint8_t b = *p;

    switch (state) {
      case S_AFTER_VALUE: {
        const uint8_t top = stack[depth];
        if (b == ',') {
          state = top == IN_OBJECT ? S_KEY : S_VALUE;
          p++;
          continue;
        }
        if ((b == '}' && top == IN_OBJECT) || (b == ']' && top == IN_ARRAY)) {
          p++;
          if (request_depth == depth) request_depth = 0;
          depth--;
          continue;
        }
        return FAST_FALLBACK;
      }
      case S_COLON:
        if (b != ':') return FAST_FALLBACK;
        p++;
        state = S_VALUE;
        continue;
      case S_KEY_OR_CLOSE:
      case S_KEY: {
        if (b == '}' && state == S_KEY_OR_CLOSE) {
          p++;
          if (request_depth == depth) request_depth = 0;
          depth--;
          state = S_AFTER_VALUE;
          continue;
        }
        if (b != '"') return FAST_FALLBACK;
        const uint8_t *key = p + 1;
        const uint8_t *close = scan_string(key, end);
        if (!close) return FAST_FALLBACK;
        pending_key = K_OTHER;
        const int top_level = depth == 1;
        const int in_request = depth == 2 && request_depth == 2;
        if (saw_escape) {
          /* A tracked key may hide behind escapes: the TypeScript scanner decodes those. */
          if (top_level || in_request) return FAST_FALLBACK;
        } else if (top_level) {
          if (equals(key, close, "kind", 4)) pending_key = K_KIND;
          else if (equals(key, close, "apiVersion", 10)) pending_key = K_API_VERSION;
          else if (equals(key, close, "request", 7)) pending_key = K_REQUEST;
          else if (equals(key, close, "requestReceivedTimestamp", 24)) pending_key = K_TIMESTAMP;
        } else if (in_request) {
          if (equals(key, close, "uid", 3)) pending_key = K_UID;
        }
        if (pending_key != K_OTHER) {
          const int bit = 1 << pending_key;
          if (seen & bit) return FAST_FALLBACK; /* duplicate: the TypeScript scanner says so */
          seen |= bit;
        }
        p = close + 1;
        state = S_COLON;
        continue;
      }
      default:
        break;
    }

    /* A value is due (S_VALUE or S_VALUE_OR_CLOSE). */
    if (b == ']' && state == S_VALUE_OR_CLOSE) {
      p++;
      depth--;
      state = S_AFTER_VALUE;
      continue;
    }
    const int key = pending_key;
    pending_key = K_OTHER;
    if (key != K_OTHER && key != K_REQUEST) {
      track_key = key;
      track_depth = depth;
      track_start = (int32_t)(p - base) - removed;
    }
    if (b == '{' || b == '[') {
      if (depth == MAX_DEPTH) return FAST_FALLBACK;
      depth++;
      stack[depth] = b == '{' ? IN_OBJECT : IN_ARRAY;
      if (key == K_REQUEST && b == '{') {
        request_depth = depth;
        request_is_object = 1;
      }
      state = b == '{' ? S_KEY_OR_CLOSE : S_VALUE_OR_CLOSE;
      p++;
      continue;
    }
    const uint8_t *next;
    if (b == '"') {
      next = scan_string(p + 1, end);
      if (next) next++;
    } else if (b == '-' || is_digit(b)) {
      next = scan_number(p, end);
    } else if (b == 't') {
      next = scan_literal(p, end, "true", 4);
    } else if (b == 'f') {
      next = scan_literal(p, end, "false", 5);
    } else if (b == 'n') {
      next = scan_literal(p, end, "null", 4);
    } else {
      return FAST_FALLBACK;
    }
    if (!next) return FAST_FALLBACK;
    p = next;
    state = S_AFTER_VALUE;
  }

  /* Past the value: only whitespace may follow. */
  while (p < end && is_ws(*p)) p++;
  if (p < end) return FAST_FALLBACK;

  /* Unchanged, the compact text is the input's [value_start, value_end): the caller takes a view of
     its own bytes and this buffer is left as it is. */
  int32_t tail = (int32_t)(value_end - copy_from);
  if (changed) __builtin_memmove(out, copy_from, tail);
  out += tail;

  result[R_COMPACT_LEN] = (int32_t)(out - base);
  result[R_CHANGED] = changed;
  result[R_IS_OBJECT] = is_object;
  result[R_REQUEST_IS_OBJECT] = request_is_object;
  result[R_HIGH_BYTES] = saw_high;
  result[R_KIND_START] = spans[K_KIND][0];
  result[R_KIND_END] = spans[K_KIND][1];
  result[R_API_VERSION_START] = spans[K_API_VERSION][0];
  result[R_API_VERSION_END] = spans[K_API_VERSION][1];
  result[R_TIMESTAMP_START] = spans[K_TIMESTAMP][0];
  result[R_TIMESTAMP_END] = spans[K_TIMESTAMP][1];
  result[R_UID_START] = spans[K_UID][0];
  result[R_UID_END] = spans[K_UID][1];
  result[R_VALUE_START] = (int32_t)(value_start - base);
  return FAST_OK;
}
