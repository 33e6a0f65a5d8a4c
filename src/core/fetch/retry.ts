/**
 * Retrying transient failures: exponential backoff with full jitter
 * (delay = random(0, min(maxDelay, base * 2^attempt))), or the origin's
 * Retry-After when it gave one (capped, so a hostile origin cannot park a
 * job for a day).
 *
 * Only `MediaCacheError`s marked `retryable` are retried (network errors,
 * timeouts, 408/429/5xx); everything else fails at once.
 */
import { MediaCacheError } from '../errors.js';

export interface RetryOptions {
  /** Retries after the first attempt; 0 means try once. */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Upper bound on a server-requested Retry-After wait. */
  maxRetryAfterMs: number;
  signal?: AbortSignal;
  /** Injected for tests; default is an abortable timer. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Injected for tests; default Math.random. */
  random?: () => number;
  onRetry?: (err: MediaCacheError, attempt: number, delayMs: number) => void;
}

export const RETRY_DEFAULTS = Object.freeze({
  retries: 3,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 60_000,
});

/**
 * Run `fn(attempt)` (attempt counts from 0) until it resolves, throws a
 * non-retryable error, or the retries are used up (the last error is thrown).
 * An abort of `signal` during a backoff rejects with E_ABORTED at once.
 */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const sleep = opts.sleep ?? abortableSleep;
  const random = opts.random ?? Math.random;
  for (let attempt = 0; ; attempt++) {
    throwIfAborted(opts.signal);
    try {
      return await fn(attempt);
    } catch (e) {
      if (!(e instanceof MediaCacheError) || !e.retryable || attempt >= opts.retries) throw e;
      if (opts.signal?.aborted) throw abortedError(opts.signal);
      const delay = backoffDelay(attempt, e.retryAfterMs, opts, random);
      opts.onRetry?.(e, attempt + 1, delay);
      await sleep(delay, opts.signal);
    }
  }
}

/** The wait before retry number `attempt + 1`. Pure given `random`. */
export function backoffDelay(
  attempt: number,
  retryAfterMs: number | undefined,
  opts: Pick<RetryOptions, 'baseDelayMs' | 'maxDelayMs' | 'maxRetryAfterMs'>,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    return Math.min(retryAfterMs, opts.maxRetryAfterMs);
  }
  const ceiling = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Returns the
 * wait in ms from `now`, 0 for dates in the past, undefined when absent or
 * unparseable.
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === '') return undefined;
  if (/^\d+$/.test(v)) {
    const secs = Number(v);
    return Number.isSafeInteger(secs * 1000) ? secs * 1000 : undefined;
  }
  // HTTP-date must contain a letter (weekday/month); refuse "1.5", "-3", etc.
  if (!/[a-z]/i.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** setTimeout that rejects with E_ABORTED when `signal` fires. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortedError(signal));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortedError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedError(signal);
}

function abortedError(signal: AbortSignal): MediaCacheError {
  const r: unknown = signal.reason;
  if (r instanceof MediaCacheError && r.code === 'E_ABORTED') return r;
  return new MediaCacheError('E_ABORTED', 'aborted', { cause: r });
}
