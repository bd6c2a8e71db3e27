/**
 * @module Caller authentication by path token (`--path-token-file`): the webhook answers only at
 * `/log-request/<token>`, and a token may name the cluster that uses it.
 *
 * The API server of a managed cluster presents no client certificate, but it calls exactly the URL
 * in the webhook configuration, so a secret in the path is what every cluster can send. The file
 * holds one token per line, optionally followed by a cluster name; one central kube-audit-rest
 * serving many clusters then stamps each line with the cluster whose token was used.
 *
 * Tokens are compared by digest: the set holds the SHA-256 of each token, and a request's token is
 * hashed and looked up. The lookup's time depends on the candidate's digest, which tells an
 * attacker nothing about a token (finding a token from its digest is a preimage search), so no
 * prefix of a token can be learnt from the time an answer takes. A wrong token gets the same 404 as
 * any unknown path. The file is reloaded when it changes; a token is never logged.
 */

import { readTextFile, watchFiles } from '../support/file-watcher.ts';
import type { Logger } from '../support/log.ts';
import type { CallerContext, RouteParams } from './webhook.ts';

/** What a path token's line says about its caller. */
export type TokenEntry = CallerContext;

/** The tokens of a file, by digest; see the module comment. */
export type TokenSet = ReadonlyMap<string, TokenEntry>;

/** A token file that cannot be used; the message names the file and the line, never a token. */
export class TokenFileError extends Error {
  override readonly name = 'TokenFileError';
}

/**
 * Shortest token accepted: 16 characters of the allowed alphabet carry at least 96 bits when
 * random (hex: 64 bits, so use 32 or more hex digits; `openssl rand -hex 32` gives 64).
 */
export const MIN_TOKEN_LENGTH = 16;
/** Longest token accepted; a longer path segment is refused before it is hashed. */
export const MAX_TOKEN_LENGTH = 512;
/**
 * RFC 3986's unreserved characters: a token made of them goes into a URL unchanged, so the URL in
 * the webhook configuration and the path the server sees are the same bytes.
 */
const TOKEN_ALPHABET = /^[A-Za-z0-9._~-]+$/;
/** A cluster name: one word (whitespace separates it from the token), at most a DNS name's 253 characters. */
const CLUSTER_NAME = /^\S{1,253}$/;

/** The digest a token is known by (Bun's one-shot hash: 0.2 µs here for 64 characters, node:crypto's createHash 0.35). */
export function tokenDigest(token: string): string {
  return Bun.CryptoHasher.hash('sha256', token, 'base64');
}

/**
 * Reads a token file's text: one `TOKEN [CLUSTER-NAME]` per line; blank lines and lines starting
 * with `#` are skipped. Throws a {@link TokenFileError} naming `file` and the line when a line is
 * malformed, a token repeats, or there is no token at all.
 */
export function parseTokenFile(file: string, text: string): TokenSet {
  const tokens = new Map<string, TokenEntry>();
  const firstLine = new Map<string, number>();
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `path token file ${file}, line ${i + 1}`;
    const [token = '', clusterName, ...extra] = line.split(/\s+/);
    if (extra.length > 0) throw new TokenFileError(`${where}: expected a token and at most one cluster name`);
    if (!TOKEN_ALPHABET.test(token)) {
      throw new TokenFileError(`${where}: a token may hold only letters, digits and . _ ~ -`);
    }
    if (token.length < MIN_TOKEN_LENGTH || token.length > MAX_TOKEN_LENGTH) {
      throw new TokenFileError(
        `${where}: a token must be ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} characters long, not ${token.length}`,
      );
    }
    if (clusterName !== undefined && !CLUSTER_NAME.test(clusterName)) {
      throw new TokenFileError(`${where}: the cluster name is longer than 253 characters`);
    }
    const digest = tokenDigest(token);
    const seen = firstLine.get(digest);
    if (seen !== undefined) throw new TokenFileError(`${where}: repeats the token of line ${seen}`);
    firstLine.set(digest, i + 1);
    tokens.set(digest, clusterName === undefined ? {} : { clusterName });
  }
  if (tokens.size === 0) throw new TokenFileError(`path token file ${file}: holds no token`);
  return tokens;
}

/** The tokens in force, following their file. */
export type PathTokens = {
  /** What the caller presenting `token` is, or undefined when the token is not in the set. */
  find(token: string): TokenEntry | undefined;
  /** How many tokens are in force. */
  readonly size: number;
  /** Re-reads the file now (SIGHUP); true when a changed, valid set took effect. Never rejects. */
  reloadNow(): Promise<boolean>;
  /** Stops following the file. */
  close(): Promise<void>;
};

/** Options for {@link loadPathTokens}. */
export type PathTokensOptions = {
  /** The token file. */
  file: string;
  /** Where reloads are reported (component `caller-auth`). */
  logger: Logger;
  /** How often the file is re-read in case a change notification was missed, in ms; 0: never. Default 10 000. */
  reloadIntervalMs?: number;
  /** Quiet time after a file event before re-reading, in ms. Default 200. */
  debounceMs?: number;
  /** Called with the new set's size after a changed file took effect. */
  onReload?: (size: number) => void;
  /** Called when a changed file was refused; the previous tokens stay in force. */
  onReloadError?: (err: Error) => void;
};

/**
 * Reads and checks the token file, then follows it: a changed file that parses replaces the set at
 * once; one that does not is logged and counted, and the previous set stays. Rejects with a
 * {@link TokenFileError} (or the read error) when the file is unusable at start.
 */
export async function loadPathTokens(options: PathTokensOptions): Promise<PathTokens> {
  const { file } = options;
  const log = options.logger.child('caller-auth');
  const text = await readTextFile('path token file', file);
  let tokens = parseTokenFile(file, text);

  function refused(err: Error): void {
    // The message names the file and line, never a token (parseTokenFile's errors never quote one).
    log.error('path tokens not reloaded; the previous tokens stay in force', { file, err });
    options.onReloadError?.(err);
  }

  const watcher = watchFiles({
    files: [file],
    initial: [text],
    onChange([next = '']) {
      try {
        tokens = parseTokenFile(file, next);
      } catch (err) {
        refused(err as Error);
        return false;
      }
      log.info('path tokens reloaded', { file, tokens: tokens.size });
      options.onReload?.(tokens.size);
      return true;
    },
    onReadError: refused,
    logger: log,
    ...(options.reloadIntervalMs === undefined ? {} : { reloadIntervalMs: options.reloadIntervalMs }),
    ...(options.debounceMs === undefined ? {} : { debounceMs: options.debounceMs }),
  });

  return {
    find(token) {
      // Longer than any token: refused without hashing, so a long path costs no more than a short one.
      if (token.length > MAX_TOKEN_LENGTH) return undefined;
      return tokens.get(tokenDigest(token));
    },
    get size() {
      return tokens.size;
    },
    reloadNow: () => watcher.checkNow(),
    close: () => watcher.close(),
  };
}

/** A guard's verdict: the caller it let through, or the answer that refuses the request. */
export type GuardResult = CallerContext | Response;

/** A check run before a route's handler, by both routers (see routes.ts). */
export type RouteGuard = (req: Request, params: RouteParams) => GuardResult;

/** Options for {@link pathToken}. */
export type PathTokenOptions = {
  /** The tokens in force. */
  tokens: Pick<PathTokens, 'find'>;
  /** The answer for a wrong token: the same as for any unknown path, so a wrong token looks like one. */
  notFound: (req: Request) => Response;
  /** The route parameter holding the token. Default `token`. */
  param?: string;
};

/** Creates the path-token guard: lets through a request whose token is in force, as its cluster. */
export function pathToken(options: PathTokenOptions): RouteGuard {
  const { tokens, notFound } = options;
  const param = options.param ?? 'token';
  return function pathToken(req, params) {
    const found = tokens.find(params[param] ?? '');
    return found ?? notFound(req);
  };
}
