/**
 * @module A raw HTTP/1.1 client over TLS for process-level tests: sends exactly the bytes given
 * (odd methods, bad Host headers, pipelined requests, partial bodies) and reads back what the server
 * sends, response by response, and whether it closed the connection.
 */
import { connect, type TLSSocket } from 'node:tls';
import { waitUntil } from './server-process.ts';

/** One parsed response: the status line's code, the headers (lower-case names) and the body text. */
export type RawResponse = { status: number; headers: Record<string, string>; body: string };

/** An open raw connection. */
export type RawConnection = {
  /** Sends bytes as they are (one write). */
  send(bytes: string): void;
  /** Everything received so far. */
  received(): string;
  /** The complete responses received so far, in order (a `100 Continue` counts as one). */
  responses(): RawResponse[];
  /** Whether the server has closed the connection. */
  closed(): boolean;
  /** Waits until `n` complete responses have arrived, or rejects after `timeoutMs`. */
  waitForResponses(n: number, timeoutMs?: number): Promise<RawResponse[]>;
  /** Waits until the server closes the connection, or rejects after `timeoutMs`. */
  waitForClose(timeoutMs?: number): Promise<void>;
  /** Closes the connection from this side. */
  destroy(): void;
};

/** Default time to wait for an answer or a close. */
const DEFAULT_WAIT_MS = 5_000;

/** Parses as many complete responses (Content-Length bodies, or none) as `text` holds. */
export function parseResponses(text: string): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  for (;;) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd < 0) return out;
    const [statusLine = '', ...lines] = text.slice(at, headEnd).split('\r\n');
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    const bodyStart = headEnd + 4;
    if (text.length < bodyStart + length) return out;
    out.push({
      status: Number(statusLine.split(' ')[1]),
      headers,
      body: text.slice(bodyStart, bodyStart + length),
    });
    at = bodyStart + length;
  }
}

/** Opens a TLS connection to 127.0.0.1:`port` (the certificate is not checked: tests make their own). */
export function rawConnect(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    let text = '';
    let closed = false;
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      socket.off('error', reject);
      socket.on('error', () => {
        closed = true;
      });
      resolve(connection);
    });
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
    });
    socket.on('close', () => {
      closed = true;
    });
    const connection: RawConnection = {
      send: (bytes) => void socket.write(bytes),
      received: () => text,
      responses: () => parseResponses(text),
      closed: () => closed,
      async waitForResponses(n, timeoutMs = DEFAULT_WAIT_MS) {
        await waitUntil(() => parseResponses(text).length >= n, timeoutMs, `${n} responses`);
        return parseResponses(text);
      },
      async waitForClose(timeoutMs = DEFAULT_WAIT_MS) {
        await waitUntil(() => closed, timeoutMs, 'the server to close the connection');
      },
      destroy: () => socket.destroy(),
    };
  });
}

/**
 * Builds a request's bytes: the request line, the headers (`host: localhost` unless `host` is given;
 * `host: null` sends none), a blank line, the body.
 */
export function rawRequest(
  requestLine: string,
  headers: Record<string, string | null> = {},
  body = '',
): string {
  const all = { host: 'localhost', ...headers };
  const head = Object.entries(all)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `${requestLine}\r\n${head}\r\n${body}`;
}
