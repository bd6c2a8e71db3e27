/*
 * The fast path of src/review/json-scan.ts, compiled to WebAssembly (see build.sh): validate a compact JSON
 * text and list the members of its top two object levels (where each key and value is), so that
 * the TypeScript side can find any AdmissionReview field without a second pass. No key name is
 * known here: which members matter is decided in src/audit/record.ts alone.
 *
 * It only ever answers "valid, and here is what I found" or "not on the fast path". Every error,
 * every listed key spelled with escapes, more members than the table holds and any whitespace
 * between tokens (the API server sends none, so there is nothing to compact) is handed back to the
 * TypeScript scanner, which decides, compacts and words the message. So this file has one job: to
 * agree with json-scan.ts on every text it accepts (test/json-scan-wasm.test.ts checks both on the
 * same inputs, and the whole scanner suite runs against each).
 *
 * Strings, most of a Kubernetes object, are read 16 bytes at a time with SIMD compares. UTF-8 is
 * not validated here: a text with bytes >= 0x80 in its strings is flagged and the caller checks it.
 */
#include <stdint.h>
#include <wasm_simd128.h>

/* Same limit as MAX_DEPTH in json-scan.ts. */
#define MAX_DEPTH 10000

/* What scan() returns. */
#define FAST_OK 0
#define FAST_FALLBACK 1

/* Layout of result[]; mirrored in json-scan-wasm.ts. Offsets are into the compact text. */
enum {
  R_COMPACT_LEN,
  R_IS_OBJECT,
  R_HIGH_BYTES, /* 1 if some byte >= 0x80 was seen (the caller validates UTF-8) */
  R_VALUE_START, /* where the compact text starts in the input (leading whitespace skipped) */
  R_MEMBER_COUNT,
  R_COUNT
};

/*
 * Members listed: those of the root object, and of each object that is a root member's value. An
 * AdmissionReview has about 20 (4 at the root, 15 in request); a text with more goes to the
 * TypeScript scanner, whose table grows. Same layout as MEMBER_INTS in json-scan.ts.
 */
#define MAX_MEMBERS 64
enum { M_KEY_START, M_KEY_END, M_VALUE_START, M_VALUE_END, M_PARENT, M_ESCAPED, M_INTS };

int32_t result[R_COUNT + MAX_MEMBERS * M_INTS];
static uint8_t stack[MAX_DEPTH + 1];

/* Where the caller copies the input, then a NUL byte and 15 more bytes it has made room for. */
extern unsigned char __heap_base;
unsigned char *input_buffer(void) { return &__heap_base; }
int32_t *result_buffer(void) { return result; }

#define IN_OBJECT 1
#define IN_ARRAY 2

static inline int is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
static inline int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static inline int is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int saw_high;
static int saw_escape;

/*
 * Scans a string body from p (just past the opening quote); returns the closing quote, or 0 on any
 * error. Sets saw_escape if the string holds a backslash. The input ends in a NUL sentinel followed
 * by at least 15 readable bytes (see scan), so 16-byte loads need no bounds check: the sentinel, a
 * control character, stops every string that runs off the end. Inlined at its three call sites:
 * measured 10-15 % faster on the corpus's pod and deployment reviews.
 */
static inline __attribute__((always_inline)) const uint8_t *scan_string(const uint8_t *p) {
  const v128_t quote = wasm_i8x16_splat('"');
  const v128_t backslash = wasm_i8x16_splat('\\');
  const v128_t space = wasm_i8x16_splat(0x20);
  saw_escape = 0;
  for (;;) {
    v128_t v = wasm_v128_load(p);
    v128_t stop = wasm_v128_or(wasm_v128_or(wasm_i8x16_eq(v, quote), wasm_i8x16_eq(v, backslash)),
                               wasm_u8x16_lt(v, space));
    uint32_t mask = (uint32_t)wasm_i8x16_bitmask(stop);
    if (!mask) {
      if (wasm_i8x16_bitmask(v)) saw_high = 1;
      p += 16;
      continue;
    }
    /* Bytes >= 0x80 before the first stop byte belong to this string. */
    uint32_t first = mask & -mask;
    if ((uint32_t)wasm_i8x16_bitmask(v) & (first - 1)) saw_high = 1;
    p += __builtin_ctz(mask);
    uint8_t c = *p;
    if (c == '"') return p;
    if (c < 0x20) return 0;
    /* A backslash: a valid escape, then on with the string. */
    uint8_t e = p[1];
    saw_escape = 1;
    if (e == 'u') {
      if (!is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5])) return 0;
      p += 6;
    } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
               e == 't') {
      p += 2;
    } else {
      return 0;
    }
  }
}

/* Scans a number from p; returns the byte past it, or 0. The sentinel ends every run of digits. */
static inline __attribute__((always_inline)) const uint8_t *scan_number(const uint8_t *p) {
  if (*p == '-') p++;
  if (*p == '0') {
    p++;
  } else if (is_digit(*p)) {
    while (is_digit(*p)) p++;
  } else {
    return 0;
  }
  if (*p == '.') {
    p++;
    const uint8_t *d = p;
    while (is_digit(*p)) p++;
    if (p == d) return 0;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    const uint8_t *d = p;
    while (is_digit(*p)) p++;
    if (p == d) return 0;
  }
  return p;
}

/* Compares the literal at p; the sentinel mismatches any letter, so no bounds check is needed. */
static const uint8_t *scan_literal(const uint8_t *p, const char *word, int len) {
  for (int k = 0; k < len; k++)
    if (p[k] != (uint8_t)word[k]) return 0;
  return p + len;
}

/*
 * Scans the n bytes at input_buffer(), which the caller has followed with a NUL byte and 15 more
 * readable bytes. Returns FAST_OK with result[] filled in, or FAST_FALLBACK for anything this fast
 * path does not take: an error, whitespace between tokens (the API server sends none), a listed key
 * written with escapes, more than MAX_MEMBERS listed members.
 *
 * The grammar is walked with one label per position (a value, a key, after a value), so each test
 * is made where it is nearly always true, and the branches stay predictable.
 */
int32_t scan(int32_t n) {
  const uint8_t *const base = input_buffer();
  const uint8_t *const end = base + n;
  const uint8_t *p = base;
  saw_high = 0;
  while (p < end && is_ws(*p)) p++;
  if (p == end) return FAST_FALLBACK;
  const uint8_t *const value_start = p;
  const int32_t origin = (int32_t)(value_start - base);

  int depth = 0;
  int32_t *const members = result + R_COUNT;
  int count = 0;
  int pending = 0; /* 1 when the value about to be scanned is a listed member's */
  int open1 = -1; /* the listed root member whose value is being scanned */
  int open2 = -1; /* the listed member one level down whose value is being scanned */
  const int is_object = *value_start == '{';

value: {
  if (pending) {
    members[(count - 1) * M_INTS + M_VALUE_START] = (int32_t)(p - base) - origin;
    pending = 0;
  }
  switch (*p) {
    case '"': {
      const uint8_t *close = scan_string(p + 1);
      if (!close) return FAST_FALLBACK;
      p = close + 1;
      goto after_value;
    }
    case '{':
      if (depth == MAX_DEPTH) return FAST_FALLBACK;
      stack[++depth] = IN_OBJECT;
      p++;
      if (*p == '}') {
        p++;
        goto close_container;
      }
      goto key;
    case '[':
      if (depth == MAX_DEPTH) return FAST_FALLBACK;
      stack[++depth] = IN_ARRAY;
      p++;
      if (*p == ']') {
        p++;
        goto close_container;
      }
      goto value;
    case 't':
      p = scan_literal(p, "true", 4);
      break;
    case 'f':
      p = scan_literal(p, "false", 5);
      break;
    case 'n':
      p = scan_literal(p, "null", 4);
      break;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
      p = scan_number(p);
      break;
    default:
      return FAST_FALLBACK;
  }
  if (!p) return FAST_FALLBACK;
  goto after_value;
}

key: {
  if (*p != '"') return FAST_FALLBACK;
  const uint8_t *const name = p + 1;
  const uint8_t *const close = scan_string(name);
  if (!close) return FAST_FALLBACK;
  /* Keys of the root object, and of objects that are the root's members' values. */
  if (depth == 1 || (depth == 2 && stack[1] == IN_OBJECT)) {
    if (saw_escape) return FAST_FALLBACK; /* scanJson decodes escaped keys and flags them */
    if (count == MAX_MEMBERS) return FAST_FALLBACK;
    int32_t *const m = members + count * M_INTS;
    m[M_KEY_START] = (int32_t)(p - base) - origin;
    m[M_KEY_END] = (int32_t)(close + 1 - base) - origin;
    m[M_PARENT] = depth == 1 ? -1 : open1;
    m[M_ESCAPED] = 0;
    if (depth == 1) open1 = count;
    else open2 = count;
    count++;
    pending = 1;
  }
  p = close + 1;
  if (*p != ':') return FAST_FALLBACK;
  p++;
  goto value;
}

close_container:
  depth--;
  /* fall through: a container is a value that just ended */

after_value:
  /* A value directly inside a listed object ended: it is the open member's value. */
  if (depth == 2 && open2 >= 0) {
    members[open2 * M_INTS + M_VALUE_END] = (int32_t)(p - base) - origin;
    open2 = -1;
  } else if (depth == 1 && open1 >= 0) {
    members[open1 * M_INTS + M_VALUE_END] = (int32_t)(p - base) - origin;
    open1 = -1;
  }
  if (depth == 0) goto done;
  if (*p == ',') {
    p++;
    if (stack[depth] == IN_OBJECT) goto key;
    goto value;
  }
  if (*p == (stack[depth] == IN_OBJECT ? '}' : ']')) {
    p++;
    goto close_container;
  }
  return FAST_FALLBACK;

done: {
  const uint8_t *const value_end = p;
  while (p < end && is_ws(*p)) p++;
  if (p != end) return FAST_FALLBACK;
  result[R_COMPACT_LEN] = (int32_t)(value_end - value_start);
  result[R_IS_OBJECT] = is_object;
  result[R_HIGH_BYTES] = saw_high;
  result[R_VALUE_START] = origin;
  result[R_MEMBER_COUNT] = count;
  return FAST_OK;
}
}

/*
 * Returns the offset just past the value that starts at `pos` in the text of the last scan() that
 * returned FAST_OK (still in the input buffer), for src/review/navigate.ts: finding the end of a large
 * value (managedFields, an object) without walking it byte by byte in JavaScript. The text was
 * validated by that scan, so nothing is checked here; strings go 16 bytes at a time.
 */
int32_t skip_value(int32_t pos) {
  const uint8_t *const base = input_buffer();
  const uint8_t *p = base + pos;
  uint8_t c = *p;
  if (c == '"') return (int32_t)(scan_string(p + 1) + 1 - base);
  if (c != '{' && c != '[') {
    while (*p != ',' && *p != '}' && *p != ']' && *p != 0) p++;
    return (int32_t)(p - base);
  }
  int depth = 0;
  for (;;) {
    c = *p;
    if (c == '"') {
      p = scan_string(p + 1) + 1;
      continue;
    }
    if (c == '{' || c == '[') {
      depth++;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return (int32_t)(p + 1 - base);
    }
    p++;
  }
}
