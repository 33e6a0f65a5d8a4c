/**
 * PostgreSQL failures in the project's terms. Everything a database call
 * throws leaves this layer as a MediaCacheError('E_UNAVAILABLE'): retryable
 * when the server could not be reached or went away (the caller keeps its
 * work and tries again), not retryable for anything else (a bug or a schema
 * problem, which waiting will not fix).
 */
import { MediaCacheError } from '../errors.js';

/** Socket-level errno codes of a server that is down, restarting or unreachable. */
const NET_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT', // Unix socket file absent: the server is stopped
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/**
 * SQLSTATEs meaning "try again later": class 08 (connection exception),
 * 57P01-57P03 (admin/crash shutdown, cannot connect now: starting or
 * stopping), 53300 (too many connections), 53100 (disk full on the server).
 */
const RETRY_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '53100']);

/** Messages node-postgres uses for a connection lost or never made (it sets no code on them). */
const NET_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection not open|Cannot use a pool after calling end/i;

/** Serialization failure and deadlock: the transaction may simply be run again. */
export function isTransient(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01';
}

export function isConnectionError(e: unknown): boolean {
  if (e instanceof MediaCacheError) return e.code === 'E_UNAVAILABLE' && e.retryable;
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (NET_ERRNOS.has(code) || RETRY_SQLSTATES.has(code) || code.startsWith('08')) return true;
  }
  const msg = e instanceof Error ? e.message : String(e);
  return NET_MESSAGES.test(msg);
}

/**
 * Wrap a database failure. `target` names the database without credentials
 * ("db on /run/postgresql:5432") so the message says where we tried.
 */
export function pgError(e: unknown, target: string): MediaCacheError {
  if (e instanceof MediaCacheError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (isConnectionError(e)) {
    return new MediaCacheError('E_UNAVAILABLE', `database unavailable (${target}): ${msg}`, { cause: e, retryable: true });
  }
  const code = (e as { code?: unknown } | null)?.code;
  const state = typeof code === 'string' ? ` [${code}]` : '';
  return new MediaCacheError('E_UNAVAILABLE', `database error${state} (${target}): ${msg}`, { cause: e });
}
