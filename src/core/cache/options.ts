/** MediaCache options: the documented shape, defaults, and validation (done once, at open). */
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { MediaCacheError } from '../errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { RETRY_DEFAULTS } from '../fetch/retry.js';
import type { PgDatabase } from '../postgres/pg-db.js';
import { toUrlPolicy, type UrlPolicy, type UrlPolicyOptions } from '../fetch/url-policy.js';
import type { LookupFn } from '../fetch/policy-dispatch.js';

export interface MediaCacheOptions {
  cacheDir: string;
  /** Where the index lives (default `<cacheDir>/index`). */
  indexDir?: string;
  /** Network fetches in flight at once, across all callers (default 5). */
  concurrency?: number;
  /** Per-download stall/overall limit in ms (default 30000). */
  timeoutMs?: number;
  /** Larger content is refused with E_TOO_LARGE (default 2 GiB). */
  maxFileSize?: number;
  maxRedirects?: number;
  /** Retries of a retryable failure (network, 408, 429, 5xx); default 3. */
  retries?: number;
  /** First backoff delay; doubles per attempt with jitter (default 500 ms). */
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /** Longest Retry-After we honour (default 60 s). */
  maxRetryAfterMs?: number;
  logger?: Logger;
  /** An undici dispatcher to use instead of our own (not closed by close()). */
  dispatcher?: Dispatcher;
  /** Clock for fetchedAt/verifiedAt (tests). */
  now?: () => number;
  /** Index write coalescing delay, passed to IndexDb. */
  flushDelayMs?: number;
  /**
   * Take `<cacheDir>/.lock` so that no other process or instance writes this
   * cache at the same time; open fails with E_UNAVAILABLE naming the holder
   * (default true). Only a caller that already holds the lock (the daemon)
   * passes false.
   */
  lock?: boolean;
  /** Bytes the cached files may take (0 = no limit, the default); see quota.ts for the watermarks. */
  maxSize?: number;
  /** Bytes to keep free on the cache's filesystem (0 = no limit, the default). */
  minFree?: number;
  /**
   * Test hook (fault injection): called during an eviction once the
   * victims' `evicting` marks are durable, before their files are unlinked.
   */
  onEvictionMarked?: (md5s: string[]) => Promise<void> | void;
  /**
   * Cluster mode: keep records and the URL map in this PostgreSQL database
   * (`postgres://…`, or an open PgDatabase the caller closes) instead of the
   * embedded index; cacheDir is then the content root every daemon of the
   * cluster shares, and no `.lock` is taken (see media-cache.ts).
   */
  database?: string | PgDatabase;
  /**
   * Which hosts, addresses and ports may be fetched, checked on every
   * redirect hop and on the resolved address actually connected to
   * (docs/security.md). Default: everything (preset 'open'); services facing
   * untrusted input want `{ preset: 'public' }`. Refusals fail with E_FORBIDDEN.
   * Not applied to a `dispatcher` you pass yourself.
   */
  urlPolicy?: UrlPolicy | UrlPolicyOptions;
  /** Name resolution for our own dispatcher (default dns.lookup); for tests and custom resolvers. */
  lookup?: LookupFn;
}

/** The options after defaults, as the instance uses them (`cache.options`). */
export type MediaCacheSettings = Required<
  Omit<MediaCacheOptions, 'dispatcher' | 'flushDelayMs' | 'indexDir' | 'lock' | 'onEvictionMarked' | 'database' | 'urlPolicy' | 'lookup'>
> & {
  indexDir: string;
  urlPolicy: UrlPolicy;
};

export const CACHE_DEFAULTS = Object.freeze({
  concurrency: 5,
  timeoutMs: 30_000,
  maxFileSize: 2 * 1024 ** 3,
  maxRedirects: 5,
  retries: RETRY_DEFAULTS.retries,
  retryBaseDelayMs: RETRY_DEFAULTS.baseDelayMs,
  retryMaxDelayMs: RETRY_DEFAULTS.maxDelayMs,
  maxRetryAfterMs: RETRY_DEFAULTS.maxRetryAfterMs,
  maxSize: 0,
  minFree: 0,
});

export function checkInt(name: string, v: number | undefined, min: number): void {
  if (v === undefined) return;
  if (!Number.isSafeInteger(v) || v < min) {
    throw new MediaCacheError('E_BAD_REQUEST', `option ${name} must be an integer >= ${min}, got ${String(v)}`);
  }
}

/** Defaults applied and every value checked; throws E_BAD_REQUEST naming the option. */
export function resolveCacheOptions(opts: MediaCacheOptions): MediaCacheSettings {
  if (!opts || typeof opts.cacheDir !== 'string' || opts.cacheDir.trim() === '') {
    throw new MediaCacheError('E_BAD_REQUEST', 'option cacheDir is required (the cache root folder)');
  }
  checkInt('concurrency', opts.concurrency, 1);
  checkInt('timeoutMs', opts.timeoutMs, 1);
  checkInt('maxFileSize', opts.maxFileSize, 1);
  checkInt('maxRedirects', opts.maxRedirects, 0);
  checkInt('retries', opts.retries, 0);
  checkInt('retryBaseDelayMs', opts.retryBaseDelayMs, 0);
  checkInt('retryMaxDelayMs', opts.retryMaxDelayMs, 0);
  checkInt('maxRetryAfterMs', opts.maxRetryAfterMs, 0);
  checkInt('maxSize', opts.maxSize, 0);
  checkInt('minFree', opts.minFree, 0);
  const cacheDir = path.resolve(opts.cacheDir);
  const urlPolicy = toUrlPolicy(opts.urlPolicy);
  const pick = <K extends keyof typeof CACHE_DEFAULTS>(k: K): number => opts[k] ?? CACHE_DEFAULTS[k];
  return {
    cacheDir,
    indexDir: path.resolve(opts.indexDir ?? path.join(cacheDir, 'index')),
    concurrency: pick('concurrency'),
    timeoutMs: pick('timeoutMs'),
    maxFileSize: pick('maxFileSize'),
    maxRedirects: pick('maxRedirects'),
    retries: pick('retries'),
    retryBaseDelayMs: pick('retryBaseDelayMs'),
    retryMaxDelayMs: pick('retryMaxDelayMs'),
    maxRetryAfterMs: pick('maxRetryAfterMs'),
    maxSize: pick('maxSize'),
    minFree: pick('minFree'),
    logger: opts.logger ?? silentLogger,
    now: opts.now ?? Date.now,
    urlPolicy,
  };
}
