/**
 * The seed's module-level functions (download_and_cache_media, …) on one
 * lazily created MediaCache, configured from MEDIACACHE_* environment
 * variables the first time one of them is called (never at import).
 *
 * Its logger writes warnings and errors to stderr (MEDIACACHE_LOG_LEVEL
 * changes the level), so a script's user sees a failed download even when
 * the script ignores it; setDefaultLogger() replaces it at any time.
 */
import path from 'node:path';
import { MediaCacheError } from '../errors.js';
import { defaultCacheDir } from '../util/paths.js';
import type { CacheStats, MediaRecord } from '../types.js';
import { MediaCache, type MediaCacheOptions, type DownloadManyOptions, type DownloadManyResult } from './media-cache.js';
import type { Logger } from '../util/logger.js';
import { stderrLevelOf, stderrLogger } from '../util/stderr-logger.js';

type Env = Readonly<Record<string, string | undefined>>;

function envInt(env: Env, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = raw.trim();
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
    throw new MediaCacheError('E_BAD_REQUEST', `environment variable ${name}="${raw}" must be a whole number >= ${min}`);
  }
  return Number(v);
}

/**
 * MediaCache options from MEDIACACHE_DIR, MEDIACACHE_INDEX,
 * MEDIACACHE_CONCURRENCY, MEDIACACHE_TIMEOUT (ms) and MEDIACACHE_MAX_FILE_SIZE
 * (bytes). Pure: throws E_BAD_REQUEST naming the variable on a bad value.
 */
export function optionsFromEnv(env: Env = process.env): MediaCacheOptions {
  const dir = env.MEDIACACHE_DIR?.trim();
  const index = env.MEDIACACHE_INDEX?.trim();
  const opts: MediaCacheOptions = { cacheDir: path.resolve(dir || defaultCacheDir()) };
  if (index) opts.indexDir = path.resolve(index);
  const concurrency = envInt(env, 'MEDIACACHE_CONCURRENCY', 1);
  const timeoutMs = envInt(env, 'MEDIACACHE_TIMEOUT', 1);
  const maxFileSize = envInt(env, 'MEDIACACHE_MAX_FILE_SIZE', 1);
  if (concurrency !== undefined) opts.concurrency = concurrency;
  if (timeoutMs !== undefined) opts.timeoutMs = timeoutMs;
  if (maxFileSize !== undefined) opts.maxFileSize = maxFileSize;
  return opts;
}

let instance: Promise<MediaCache> | undefined;
let chosenLogger: Logger | undefined;

/** The stderr logger at MEDIACACHE_LOG_LEVEL (default warn), unless setDefaultLogger chose another. */
function currentLogger(): Logger {
  if (!chosenLogger) {
    const raw = process.env.MEDIACACHE_LOG_LEVEL;
    const level = stderrLevelOf(raw);
    if (raw !== undefined && raw.trim() !== '' && level === undefined) {
      throw new MediaCacheError('E_BAD_REQUEST', `environment variable MEDIACACHE_LOG_LEVEL="${raw}" must be error, warn, info or debug`);
    }
    chosenLogger = stderrLogger(level ?? 'warn');
  }
  return chosenLogger;
}

/**
 * The logger of the default instance (the module-level functions): pass your
 * own (winston, pino and console-like objects with error/warn/info/debug fit),
 * or `silentLogger` to hear nothing. Takes effect at once, also on an open instance.
 */
export function setDefaultLogger(logger: Logger): void {
  for (const m of ['error', 'warn', 'info', 'debug'] as const) {
    if (typeof (logger as unknown as Record<string, unknown> | null)?.[m] !== 'function') {
      throw new MediaCacheError('E_BAD_REQUEST', `setDefaultLogger: the logger has no ${m}() method`);
    }
  }
  chosenLogger = logger;
}

/** Forwards to whatever logger is current, so setDefaultLogger also reaches an instance opened earlier. */
const forwardingLogger: Logger = {
  error: (m, meta) => currentLogger().error(m, meta),
  warn: (m, meta) => currentLogger().warn(m, meta),
  info: (m, meta) => currentLogger().info(m, meta),
  debug: (m, meta) => currentLogger().debug(m, meta),
};

/** The default instance, opened on first use from the environment. */
export function defaultCache(): Promise<MediaCache> {
  if (!instance) {
    const opening = (async () => {
      currentLogger(); // a bad MEDIACACHE_LOG_LEVEL fails the open, like the other variables
      return MediaCache.open({ ...optionsFromEnv(process.env), logger: forwardingLogger });
    })();
    instance = opening;
    // A failed open (bad env, unwritable dir) is not remembered: the next call tries again.
    opening.catch(() => {
      if (instance === opening) instance = undefined;
    });
  }
  return instance;
}

/** Close the default instance (flushes its index); the next call opens a new one. */
export async function closeDefaultCache(): Promise<void> {
  const cur = instance;
  instance = undefined;
  if (!cur) return;
  let cache: MediaCache;
  try {
    cache = await cur;
  } catch {
    return;
  }
  await cache.close();
}

/** Seed: download_and_cache_media(url). */
export async function downloadAndCacheMedia(url: string, opts: { force?: boolean; signal?: AbortSignal } = {}): Promise<MediaRecord> {
  return (await defaultCache()).download(url, opts);
}

/**
 * Seed: download_multiple_media(urls, max_workers=5): successes in input order.
 * Each failure is logged (stderr, warn) and passed to `onError(url, error, index)`;
 * downloadMultipleMediaSettled returns the failures as data. Network fetches
 * are also bounded by MEDIACACHE_CONCURRENCY (default 5), so raise both to go
 * wider than 5.
 */
export async function downloadMultipleMedia(urls: string[], opts: Pick<DownloadManyOptions, 'maxWorkers' | 'force' | 'signal' | 'onError'> = {}): Promise<MediaRecord[]> {
  return (await defaultCache()).downloadMany(urls, opts);
}

/** As downloadMultipleMedia, returning `{ records, failures }`; each failure is `{url, index, error: {code, message, status?}}`. */
export async function downloadMultipleMediaSettled(
  urls: string[],
  opts: Pick<DownloadManyOptions, 'maxWorkers' | 'force' | 'signal' | 'onError'> = {},
): Promise<DownloadManyResult> {
  return (await defaultCache()).downloadManySettled(urls, opts);
}

/** Seed: get_cache_stats(). */
export async function getCacheStats(): Promise<CacheStats> {
  return (await defaultCache()).stats();
}

/**
 * Seed: verify_cached_media(path, md5): false when the file is missing or
 * differs. `md5` must be the full 32 hex digits: a prefix (or anything else)
 * is refused with E_BAD_REQUEST, since answering false would read as "corrupt".
 */
export async function verifyCachedMedia(filePath: string | undefined, md5: string): Promise<boolean> {
  if (typeof md5 !== 'string' || !/^[0-9a-f]{32}$/i.test(md5.trim())) {
    const shown = typeof md5 === 'string' ? `"${md5.slice(0, 40)}"` : typeof md5;
    throw new MediaCacheError(
      'E_BAD_REQUEST',
      `verifyCachedMedia needs the full md5 (32 hex digits), got ${shown}; resolve a prefix with findCachedByMd5 and pass the record's md5`,
    );
  }
  if (!filePath) return false;
  return (await defaultCache()).verifyFile(filePath, md5);
}

/**
 * Seed: find_cached_by_md5(md5): the cached file's path for a full md5 or a
 * unique prefix, undefined when nothing matches (E_AMBIGUOUS when several do),
 * so `verifyCachedMedia(await findCachedByMd5(md5), md5)` works as in the seed.
 */
export async function findCachedByMd5(md5OrPrefix: string): Promise<string | undefined> {
  return (await (await defaultCache()).find(md5OrPrefix))?.localPath;
}
