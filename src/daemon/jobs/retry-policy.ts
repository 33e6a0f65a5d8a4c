/**
 * The daemon's retry policy, in one place: which failed tries are tried
 * again, how long a job waits, and the budget per job. Pure apart from the
 * random source.
 *
 * One retry layer: the scheduler asks MediaCache for exactly one fetch per
 * try (`retries: 0`), so a job costs its origin at most `maxAttempts` fetches
 * (1 + retries), and a job waiting for its next try is queued, not running,
 * so it holds no download slot.
 */
import type { MediaCacheError } from '../../core/errors.js';
import { backoffMs } from './backoff.js';
import type { JobRecord } from './job-store.js';

export interface RetryPolicy {
  /** Retries after the first try (default 3). */
  retries: number;
  /** First wait; doubles per retry, with jitter (default 5 s). */
  baseMs: number;
  /** Longest wait, also the cap on an origin's Retry-After (default 5 min). */
  maxMs: number;
}

export const RETRY_POLICY_DEFAULTS: Readonly<RetryPolicy> = Object.freeze({ retries: 3, baseMs: 5000, maxMs: 300_000 });

/** Tries a job may have: fixed when it is queued, so a restart with another --retries keeps each job's budget. */
export function maxAttemptsOf(j: JobRecord, policy: RetryPolicy): number {
  return j.maxAttempts ?? 1 + policy.retries;
}

/**
 * Retried: what MediaCache marks `retryable` (network errors, timeouts, 408,
 * 429, 5xx, transient system errors), while budget is left. Never retried:
 * everything else, E_PROTOCOL and E_INTERNAL among them. Disk-full pauses are
 * handled apart (they stop all dispatch) and do not use up the budget.
 */
export function shouldRetry(j: JobRecord, err: MediaCacheError, policy: RetryPolicy): boolean {
  if (!err.retryable || err.code === 'E_DISK_FULL') return false;
  return j.attempts - (j.pauses ?? 0) < maxAttemptsOf(j, policy);
}

/**
 * Wait before the next try: the origin's Retry-After when it sent one,
 * else exponential backoff with jitter; both capped at `maxMs` (a 429 asking
 * for a day waits `maxMs`, queued, without holding a slot).
 */
export function retryDelayMs(j: JobRecord, err: MediaCacheError, policy: RetryPolicy, random: () => number = Math.random): number {
  const ra = err.retryAfterMs;
  if (ra !== undefined && Number.isFinite(ra) && ra >= 0) return Math.min(ra, policy.maxMs);
  const n = Math.max(0, j.attempts - (j.pauses ?? 0) - 1);
  return backoffMs(n, policy.baseMs, policy.maxMs, random);
}
