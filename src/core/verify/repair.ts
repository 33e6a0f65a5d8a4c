/**
 * Re-fetching a missing or quarantined file from the URLs its record knows.
 *
 * Invariant: only bytes whose MD5 AND SHA-256 equal the record's are ever
 * renamed to the record's name. A URL that now serves something else is
 * "changed upstream": its bytes are dropped from `.tmp/`, never stored under
 * the old name (and not cached as new content either — a sweep restores, it
 * does not download new things).
 */
import type { Dispatcher } from 'undici';
import { fetchToTmp } from '../fetch/download.js';
import { MediaCacheError, toMediaCacheError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { commitTmp, removeQuietly, storePath } from '../content/store.js';
import type { StoredRecord } from '../types.js';

export interface RepairDeps {
  cacheDir: string;
  tmpDir: string;
  dispatcher: Dispatcher;
  timeoutMs: number;
  maxFileSize: number;
  logger: Logger;
  signal?: AbortSignal;
  /** Checked just before the commit: false when the record was removed meanwhile. */
  stillWanted: () => boolean | Promise<boolean>;
}

export interface RepairOutcome {
  /** The URL whose bytes restored the file. */
  repairedFrom?: string;
  bytes: number;
  /** URLs that answered with different content. */
  changed: string[];
  /** Why it could not be repaired (undefined when repaired or no longer wanted). */
  error?: MediaCacheError;
}

/** Try each URL of `rec` in turn until one yields the recorded bytes. */
export async function repairRecord(rec: StoredRecord, deps: RepairDeps): Promise<RepairOutcome> {
  const changed: string[] = [];
  let lastError: MediaCacheError | undefined;
  if (rec.urls.length === 0) {
    return { bytes: 0, changed, error: new MediaCacheError('E_NOT_FOUND', `no URL is known for ${rec.md5} (adopted file); cannot re-fetch it`) };
  }
  for (const href of rec.urls) {
    deps.signal?.throwIfAborted();
    let url: URL;
    try {
      url = new URL(href);
    } catch {
      lastError = new MediaCacheError('E_INVALID_URL', `recorded URL is not valid: ${href}`, { url: href });
      continue;
    }
    let tmpPath: string | undefined;
    try {
      const f = await fetchToTmp(url, {
        tmpDir: deps.tmpDir,
        dispatcher: deps.dispatcher,
        timeoutMs: deps.timeoutMs,
        // The recorded size is known: refuse anything larger at once.
        maxFileSize: Math.min(deps.maxFileSize, Math.max(rec.fileSize, 1)),
        ...(deps.signal ? { signal: deps.signal } : {}),
      });
      tmpPath = f.tmpPath;
      if (f.md5 !== rec.md5 || f.sha256 !== rec.sha256) {
        changed.push(href);
        deps.logger.warn('sweep: content changed upstream; not restored', { md5: rec.md5, url: href, nowMd5: f.md5 });
        continue;
      }
      if (!(await deps.stillWanted())) return { bytes: 0, changed };
      await commitTmp(f.tmpPath, storePath(deps.cacheDir, rec));
      tmpPath = undefined;
      deps.logger.info('sweep: repaired from origin', { md5: rec.md5, url: href });
      return { repairedFrom: href, bytes: f.size, changed };
    } catch (e) {
      const err = toMediaCacheError(e, href);
      if (err.code === 'E_TOO_LARGE' || err.code === 'E_UNSUPPORTED_TYPE') {
        // Larger than the recorded file, or no longer media: the content changed.
        changed.push(href);
        deps.logger.warn('sweep: content changed upstream; not restored', { md5: rec.md5, url: href, code: err.code });
        continue;
      }
      if (err.code === 'E_ABORTED') throw err;
      lastError = err;
      deps.logger.warn('sweep: re-fetch failed', { md5: rec.md5, url: href, code: err.code, error: err.message });
    } finally {
      if (tmpPath) await removeQuietly(tmpPath);
    }
  }
  if (changed.length > 0) {
    return {
      bytes: 0,
      changed,
      error: new MediaCacheError('E_INTEGRITY', `content changed upstream at ${changed.join(', ')}; the cached copy of ${rec.md5} was not restored`, {
        url: changed[0],
      }),
    };
  }
  return { bytes: 0, changed, error: lastError ?? new MediaCacheError('E_UNAVAILABLE', `could not re-fetch ${rec.md5}`) };
}
