/**
 * One error class for the whole project. Callers branch on `code`, never on
 * the message; the same codes travel in JSON-RPC `error.data.code` and in
 * inbox reports.
 */
import { redactText, redactUrl } from './util/redact.js';

export const ERROR_CODES = [
  'E_INVALID_URL',
  'E_UNSUPPORTED_SCHEME',
  'E_HTTP',
  'E_TIMEOUT',
  'E_TOO_LARGE',
  'E_UNSUPPORTED_TYPE',
  'E_INTEGRITY',
  'E_NOT_FOUND',
  'E_AMBIGUOUS',
  'E_DISK_FULL',
  'E_BAD_REQUEST',
  'E_UNAVAILABLE',
  /** Network failure below HTTP (connection refused/reset, DNS, TLS). Retryable. */
  'E_NETWORK',
  /** The operation was cancelled (daemon shutting down, caller aborted, `cancel`). */
  'E_ABORTED',
  /** The origin's reply is not valid HTTP/1.1 (bad framing, oversized headers, not HTTP at all). Never retried. */
  'E_PROTOCOL',
  /** A fault inside mediacache itself (a bug: TypeError and the like). Never retried. */
  'E_INTERNAL',
  /** The content is larger than the whole cache quota (--max-size): it could never be kept. */
  'E_QUOTA',
  /** The URL policy refuses the host, address or port (on any hop, after DNS). Never retried. */
  'E_FORBIDDEN',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface MediaCacheErrorOptions {
  /** HTTP status for E_HTTP. */
  status?: number;
  /** The URL the error is about, when there is one. */
  url?: string;
  /** Whether a retry may succeed (network errors, 408, 429, 5xx). */
  retryable?: boolean;
  /** Seconds the origin asked us to wait (Retry-After), already parsed. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class MediaCacheError extends Error {
  readonly code: ErrorCode;
  readonly status?: number;
  readonly url?: string;
  readonly retryable: boolean;
  readonly retryAfterMs?: number;

  constructor(code: ErrorCode, message: string, opts: MediaCacheErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'MediaCacheError';
    this.code = code;
    if (opts.status !== undefined) this.status = opts.status;
    if (opts.url !== undefined) this.url = opts.url;
    this.retryable = opts.retryable ?? false;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
  }

  /**
   * Plain JSON form used in RPC `error.data`, job records, events and
   * reports: credentials in URLs are redacted (util/redact.ts), since these
   * end up in files and logs other people read.
   */
  toJSON(): ErrorInfo {
    const out: ErrorInfo = { code: this.code, message: redactText(this.message) };
    if (this.status !== undefined) out.status = this.status;
    if (this.url !== undefined) out.url = redactUrl(this.url);
    return out;
  }
}

export interface ErrorInfo {
  code: ErrorCode;
  message: string;
  status?: number;
  url?: string;
}

export function isMediaCacheError(e: unknown): e is MediaCacheError {
  return e instanceof MediaCacheError;
}

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && (ERROR_CODES as readonly string[]).includes(s);
}

/** Node errno codes that mean "the disk is full" (or the quota is). */
const DISK_FULL_ERRNOS = new Set(['ENOSPC', 'EDQUOT']);

/** System errors that pass by themselves (out of file descriptors, a busy resource): worth a retry. */
const TRANSIENT_ERRNOS = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY']);

/** A system error code such as ENOENT, EACCES, EIO (as Node sets on fs and socket errors). */
const ERRNO_RE = /^E[A-Z0-9]+$/;

/**
 * Wrap anything thrown into a MediaCacheError, keeping codes that are already
 * ours, mapping the filesystem's "no space" into E_DISK_FULL and other system
 * errors (EACCES, EIO, …) into E_UNAVAILABLE. Anything else (a TypeError, a
 * plain Error without a system code) is a fault of ours: E_INTERNAL, which no
 * layer retries, so a bug fails once instead of looking like an outage.
 */
export function toMediaCacheError(e: unknown, url?: string): MediaCacheError {
  if (e instanceof MediaCacheError) return e;
  const errno = (e as { code?: unknown } | null)?.code;
  const msg = e instanceof Error ? e.message : String(e);
  if (typeof errno === 'string' && DISK_FULL_ERRNOS.has(errno)) {
    return new MediaCacheError('E_DISK_FULL', `disk full: ${msg}`, { cause: e, url, retryable: true });
  }
  if (typeof errno === 'string' && ERRNO_RE.test(errno)) {
    return new MediaCacheError('E_UNAVAILABLE', msg, { cause: e, url, retryable: TRANSIENT_ERRNOS.has(errno) });
  }
  const kind = e instanceof Error && e.name !== 'Error' ? `${e.name}: ` : '';
  return new MediaCacheError('E_INTERNAL', `internal error: ${kind}${msg}`, { cause: e, url });
}
