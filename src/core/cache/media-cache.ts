/**
 * MediaCache: the library API. Downloads a URL into `.tmp/`, hashes and sniffs
 * it while streaming, then moves it under `<type>/<md5>.<ext>` and records it.
 *
 * Invariants:
 * - The file is renamed into place before its record is written, so a record
 *   never points at a partial file (a crash in between leaves an orphan file
 *   that a sweep adopts). Files are synced and renamed in batches by the
 *   GroupCommitter (content/group-commit.ts), always fdatasync before rename;
 *   download() resolves only after the index journal commit that follows
 *   (IndexDb.flush coalesces concurrent callers into one append + fdatasync).
 * - Bodies announced at most SMALL_BODY_MAX bytes are held in memory while
 *   streaming and written by the committer in one go (no tmp file, no
 *   threadpool round trip per system call on the main thread).
 * - Identity is md5 AND sha256: an md5 match with another sha256 is refused
 *   (E_INTEGRITY) and never replaces the cached file.
 * - Index lookups and commits for one md5 happen inside a per-md5 critical
 *   section, so concurrent downloads of identical content produce one file.
 * - Concurrent downloads of one URL share one network fetch (single flight).
 * - A URL belongs to one record: IndexDb.put moves it off a record that
 *   listed it before (the origin now serves other content).
 */
import fs from 'node:fs';
import type { Dispatcher } from 'undici';
import { MediaCacheError, toMediaCacheError } from '../errors.js';
import type { CacheStats, MediaRecord, StoredRecord } from '../types.js';
import type { Logger } from '../util/logger.js';
import { parseMediaUrl } from '../fetch/url.js';
import { createDispatcher, fetchToTmp, type Fetched } from '../fetch/download.js';
import { withRetries } from '../fetch/retry.js';
import { ensureCacheLayout, removeDeadTmp, storePath, tmpDirOf } from '../content/store.js';
import { GroupCommitter } from '../content/group-commit.js';
import { CLOSE_COMPACT_BYTES, IndexDb } from '../entry-index/index-db.js';
import { hashFile, type FileHashes } from '../hash/file-hash.js';
import { acquireCacheLock, type CacheLock } from './writer-lock.js';
import { KeyedMutex, Semaphore } from '../util/async-locks.js';
import { SingleFlight, type FlightContext } from './flight.js';
import { checkInt, resolveCacheOptions, type MediaCacheOptions, type MediaCacheSettings } from './options.js';
import { METADATA_FIELDS, METADATA_VERSION } from '../metadata/index.js';
import { readRecordMetadata, withMetadata, type MetadataOutcome } from '../metadata/record.js';

export type { MediaCacheOptions, MediaCacheSettings } from './options.js';

export interface DownloadOptions {
  /** Fetch again even when the URL is cached. */
  force?: boolean;
  signal?: AbortSignal;
  onProgress?: (bytes: number, total?: number) => void;
  /**
   * Retries of a retryable failure for this call (default: the instance's
   * `retries`), so one call costs the origin at most 1 + retries fetches. A
   * caller with its own retry policy (the daemon's scheduler) passes 0: one
   * retry layer, never one inside the other.
   */
  retries?: number;
  /**
   * false: resolve once the file is durable under its final name and the
   * record is in the in-memory index, without waiting for the index journal
   * commit; the caller commits (index.flush()) before it reports the
   * download durable (the daemon's scheduler batches that itself). Default
   * true: download() resolves after the journal commit.
   */
  durable?: boolean;
}

export interface VerifyOutcome {
  ok: boolean;
  record: MediaRecord;
  reason?: 'missing' | 'mismatch';
}

const MD5_PREFIX = /^[0-9a-f]{1,32}$/;
/**
 * Bodies whose content-length is at most this are kept in memory until the
 * committer writes them (bounded: one per network slot, see fetchAndCommit).
 */
export const SMALL_BODY_MAX = 256 * 1024;
/** Metadata fields copied into public records (width/height are placed with the SPEC fields). */
const RECORD_METADATA_KEYS = [...METADATA_FIELDS.filter((k) => k !== 'width' && k !== 'height'), 'metadataVersion'] as const;

async function fileSize(p: string): Promise<number | undefined> {
  try {
    const st = await fs.promises.stat(p);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

async function dropFile(p: string): Promise<void> {
  await fs.promises.rm(p, { force: true });
}

export class MediaCache {
  readonly cacheDir: string;
  readonly indexDir: string;
  readonly index: IndexDb;
  /** Resolved options (frozen); the sweeper reads timeoutMs/maxFileSize from here. */
  readonly options: Readonly<MediaCacheSettings>;
  readonly logger: Logger;
  /** The HTTP dispatcher every fetch (and a sweep's re-fetch) goes through. */
  readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly tmpDir: string;
  private readonly net: Semaphore;
  private readonly md5Lock = new KeyedMutex();
  private readonly flights: SingleFlight<MediaRecord>;
  /** Syncs and renames content files in batches (one worker thread, started on first use). */
  readonly committer = new GroupCommitter();
  private closing: Promise<void> | undefined;

  private constructor(
    o: MediaCacheSettings,
    index: IndexDb,
    dispatcher: Dispatcher,
    ownsDispatcher: boolean,
    private readonly lock: CacheLock | undefined,
  ) {
    this.options = Object.freeze({ ...o });
    this.logger = o.logger;
    this.cacheDir = o.cacheDir;
    this.indexDir = o.indexDir;
    this.index = index;
    this.dispatcher = dispatcher;
    this.ownsDispatcher = ownsDispatcher;
    this.tmpDir = tmpDirOf(o.cacheDir);
    this.net = new Semaphore(o.concurrency);
    this.flights = new SingleFlight((e) => this.logger.warn('progress callback threw', { error: String(e) }));
  }

  static async open(opts: MediaCacheOptions): Promise<MediaCache> {
    const o = resolveCacheOptions(opts);
    const lock = opts.lock === false ? undefined : acquireCacheLock(o.cacheDir);
    if (lock?.tookOverStale) o.logger.warn('replaced a stale cache lock', { ...lock.tookOverStale });
    try {
      const tmpDir = await ensureCacheLayout(o.cacheDir);
      // Leftovers of downloads whose process died (crash, SIGKILL) would otherwise
      // sit in .tmp/ until a sweep ages them out a day later.
      const orphans = await removeDeadTmp(tmpDir);
      if (orphans > 0) o.logger.info(`removed ${orphans} partial download(s) left by a dead process`, { tmpDir });
      const index = await IndexDb.open(o.indexDir, {
        logger: o.logger,
        closeCompactBytes: CLOSE_COMPACT_BYTES,
        ...(opts.flushDelayMs !== undefined ? { flushDelayMs: opts.flushDelayMs } : {}),
      });
      const own = opts.dispatcher === undefined;
      const dispatcher = opts.dispatcher ?? createDispatcher({ timeoutMs: o.timeoutMs, maxRedirects: o.maxRedirects });
      return new MediaCache(o, index, dispatcher, own, lock);
    } catch (e) {
      lock?.release();
      throw e;
    }
  }

  /**
   * Download (or answer from the cache) one URL. Concurrent calls for one URL
   * share one fetch; a forced call does not join an unforced one (which may
   * answer from the index).
   */
  async download(url: string, opts: DownloadOptions = {}): Promise<MediaRecord> {
    this.assertOpen();
    const parsed = parseMediaUrl(url);
    const force = opts.force === true;
    const rec = await this.flights.run(
      parsed.href,
      async (ctx) => {
        if (!force) {
          const hit = await this.cachedFor(parsed.href);
          if (hit) return hit;
        }
        return this.fetchAndCommit(parsed, ctx, opts.retries);
      },
      { fresh: force, signal: opts.signal, onProgress: opts.onProgress },
    );
    // Visible to other processes (and durable) with the journal commit that
    // follows its file's sync; concurrent downloads share one. (A cache hit
    // may be a record another caller just put: it waits for that commit too.)
    if (opts.durable !== false) await this.index.flush();
    return rec;
  }

  /** The cached record for a URL when its file is present with the recorded size. */
  private async cachedFor(href: string): Promise<MediaRecord | undefined> {
    const md5 = this.index.md5ForUrl(href);
    const stored = md5 === undefined ? undefined : this.index.get(md5);
    if (!stored) return undefined;
    const p = storePath(this.cacheDir, stored);
    if ((await fileSize(p)) === stored.fileSize) {
      this.logger.debug('cache hit', { url: href, md5: stored.md5 });
      return this.toRecord(stored, href);
    }
    this.logger.warn('cached file missing or wrong size; fetching again', { url: href, md5: stored.md5, path: p });
    return undefined;
  }

  private async fetchAndCommit(parsed: URL, ctx: FlightContext, retries: number | undefined): Promise<MediaRecord> {
    const href = parsed.href;
    const { signal } = ctx;
    const o = this.options;
    // The network slot is held until the file is published (written and
    // synced), as it was when each download synced its own file: the slots
    // bound how many bodies wait in memory or unsynced in .tmp/.
    const release = await this.net.acquire(signal);
    let rec: MediaRecord;
    try {
      this.assertOpen();
      const fetched: Fetched = await withRetries(
        () =>
          fetchToTmp(parsed, {
            tmpDir: this.tmpDir,
            dispatcher: this.dispatcher,
            timeoutMs: o.timeoutMs,
            maxFileSize: o.maxFileSize,
            signal,
            onProgress: ctx.progress,
            memoryMax: SMALL_BODY_MAX,
            bodyBuffer: this.bodyBuffer,
            sync: false,
          }),
        {
          retries: retries ?? o.retries,
          baseDelayMs: o.retryBaseDelayMs,
          maxDelayMs: o.retryMaxDelayMs,
          maxRetryAfterMs: o.maxRetryAfterMs,
          signal,
          onRetry: (err, attempt, delayMs) =>
            this.logger.info('retrying download', { url: href, attempt, delayMs, code: err.code, error: err.message }),
        },
      );
      try {
        const meta = await this.metadataFor(fetched, href, signal);
        rec = await this.md5Lock.run(fetched.md5, () => this.commit(fetched, href, ctx.fresh, meta));
      } catch (e) {
        // commit() renames or drops the tmp file when it succeeds; on failure it may be left.
        if (!fetched.body) await dropFile(fetched.tmpPath);
        throw e;
      }
    } finally {
      release();
    }
    return rec;
  }

  /**
   * Media metadata of a fetched file (its tmp copy, while the page cache still
   * holds it), unless the content is already indexed with it. Never fails the
   * download: a damaged container is stored without metadata.
   */
  private async metadataFor(f: Fetched, href: string, signal: AbortSignal): Promise<MetadataOutcome | undefined> {
    const known = this.index.get(f.md5)?.metadataVersion;
    if (known !== undefined && known >= METADATA_VERSION) return undefined;
    return readRecordMetadata(f.tmpPath, { md5: f.md5, ...f.sniffed }, this.logger, {
      timeoutMs: this.options.timeoutMs,
      signal,
      url: href,
      ...(f.head ? { head: { bytes: f.head, size: f.size } } : {}),
    });
  }

  /** Inside the md5's critical section: dedup, collision check, or new entry. */
  private async commit(f: Fetched, href: string, forced: boolean, meta: MetadataOutcome | undefined): Promise<MediaRecord> {
    const existing = this.index.get(f.md5);
    const nowIso = new Date(this.options.now()).toISOString();
    if (existing) {
      if (existing.sha256 !== f.sha256) {
        if (!f.body) await dropFile(f.tmpPath);
        this.logger.error('md5 collision refused', { url: href, md5: f.md5, cachedSha256: existing.sha256, sha256: f.sha256 });
        throw new MediaCacheError(
          'E_INTEGRITY',
          `md5 collision: ${href} has md5 ${f.md5} like a cached file but a different sha256; refused`,
          { url: href },
        );
      }
      const finalPath = storePath(this.cacheDir, existing);
      if (forced || (await fileSize(finalPath)) !== existing.fileSize) {
        // The cached copy may be gone or damaged (a same-size corruption is
        // only visible to a re-hash): the fresh bytes, whose md5 and sha256
        // match the record, replace it. Forced downloads always do.
        await this.publish(f, finalPath);
        this.logger.debug('cached file replaced by a verified fresh copy', { url: href, md5: f.md5, path: finalPath });
      } else if (!f.body) {
        await dropFile(f.tmpPath);
      }
      const updated: StoredRecord = {
        ...withMetadata(existing, meta),
        urls: existing.urls.includes(href) ? existing.urls : [...existing.urls, href],
        fetchedAt: nowIso,
        verifiedAt: nowIso,
      };
      if (f.etag !== undefined) updated.etag = f.etag;
      if (f.lastModified !== undefined) updated.lastModified = f.lastModified;
      this.index.put(updated);
      this.logger.debug('deduplicated', { url: href, md5: f.md5 });
      return this.toRecord(updated, href);
    }
    const rec: StoredRecord = {
      md5: f.md5,
      sha256: f.sha256,
      fileSize: f.size,
      mimeType: f.sniffed.mimeType,
      mediaType: f.sniffed.mediaType,
      extension: f.sniffed.extension,
      urls: [href],
      fetchedAt: nowIso,
      verifiedAt: nowIso,
    };
    if (f.width !== undefined) rec.width = f.width;
    if (f.height !== undefined) rec.height = f.height;
    if (f.etag !== undefined) rec.etag = f.etag;
    if (f.lastModified !== undefined) rec.lastModified = f.lastModified;
    const stored = withMetadata(rec, meta);
    const finalPath = storePath(this.cacheDir, stored);
    await this.publish(f, finalPath);
    this.index.put(stored);
    this.logger.info('cached', { url: href, md5: rec.md5, path: finalPath, size: rec.fileSize });
    return this.toRecord(stored, href);
  }

  private readonly bodyBuffer = (size: number): Buffer => this.committer.buffer(size);

  /** Make a fetched body durable under `finalPath` (group commit). */
  private async publish(f: Fetched, finalPath: string): Promise<void> {
    await this.committer.publish({ tmpPath: f.tmpPath, finalPath, ...(f.body ? { data: f.body } : {}) });
    f.body = undefined;
  }

  /**
   * Download many URLs with at most `maxWorkers` at a time (network fetches
   * are also bounded by the instance's `concurrency`). Returns the successes
   * in input order; each failure is logged with its code.
   */
  async downloadMany(urls: string[], opts: { maxWorkers?: number; force?: boolean; signal?: AbortSignal } = {}): Promise<MediaRecord[]> {
    this.assertOpen();
    if (!Array.isArray(urls)) throw new MediaCacheError('E_BAD_REQUEST', 'downloadMany expects an array of URLs');
    const workers = opts.maxWorkers ?? 5;
    checkInt('maxWorkers', workers, 1);
    const results: Array<MediaRecord | undefined> = new Array(urls.length);
    let next = 0;
    const work = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        if (i >= urls.length) return;
        const url = urls[i];
        try {
          // The index commit is awaited once at the end: a worker goes on to
          // its next URL as soon as this one's file is durable.
          results[i] = await this.download(String(url), { force: opts.force, signal: opts.signal, durable: false });
        } catch (e) {
          const err = toMediaCacheError(e, String(url));
          this.logger.error('download failed', { url: String(url), code: err.code, status: err.status, error: err.message });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(workers, urls.length) }, work));
    try {
      await this.index.flush();
    } catch (e) {
      // The records stay in memory and the index retries the commit on its own.
      this.logger.error('index commit after downloadMany failed; will retry', { error: (e as Error)?.message ?? String(e) });
    }
    return results.filter((r): r is MediaRecord => r !== undefined);
  }

  stats(): CacheStats {
    return this.index.stats();
  }

  /** Full md5 or a unique prefix; undefined when none matches. */
  find(md5OrPrefix: string): MediaRecord | undefined {
    const stored = this.findStored(md5OrPrefix);
    return stored && this.toRecord(stored);
  }

  private findStored(md5OrPrefix: string): StoredRecord | undefined {
    const key = typeof md5OrPrefix === 'string' ? md5OrPrefix.trim().toLowerCase() : '';
    if (!MD5_PREFIX.test(key)) {
      throw new MediaCacheError('E_BAD_REQUEST', `not an md5 or md5 prefix (1-32 hex digits): "${String(md5OrPrefix)}"`);
    }
    if (key.length === 32) return this.index.get(key);
    const hits = this.index.findByPrefix(key, 2);
    if (hits.length > 1) {
      throw new MediaCacheError('E_AMBIGUOUS', `md5 prefix "${key}" matches several cached files; give more digits`);
    }
    return hits[0];
  }

  findByUrl(url: string): MediaRecord | undefined {
    const href = parseMediaUrl(url).href;
    const md5 = this.index.md5ForUrl(href);
    const stored = md5 === undefined ? undefined : this.index.get(md5);
    return stored && this.toRecord(stored, href);
  }

  /** True when the file exists and its md5 is `md5` (case-insensitive). */
  async verifyFile(filePath: string, md5: string): Promise<boolean> {
    if (typeof filePath !== 'string' || typeof md5 !== 'string') return false;
    let h;
    try {
      h = await hashFile(filePath);
    } catch (e) {
      // A folder is not the file asked about; unreadable files (EACCES, EIO) stay errors.
      if ((e as NodeJS.ErrnoException).code === 'EISDIR') return false;
      throw toMediaCacheError(e);
    }
    return h !== undefined && h.md5 === md5.trim().toLowerCase();
  }

  /**
   * Re-hash a cached file (md5, sha256, size); records verifiedAt when it is
   * intact. `hasher` replaces the in-process streaming hash, e.g. with a
   * HashPool's worker threads when many files are verified at once.
   */
  async verify(md5OrPrefix: string, opts: { hasher?: (path: string) => Promise<FileHashes | undefined> } = {}): Promise<VerifyOutcome> {
    const stored = this.findStored(md5OrPrefix);
    if (!stored) throw new MediaCacheError('E_NOT_FOUND', `no cached file with md5 ${md5OrPrefix}`);
    const p = storePath(this.cacheDir, stored);
    const h = await (opts.hasher ?? hashFile)(p);
    if (!h) return { ok: false, record: this.toRecord(stored), reason: 'missing' };
    if (h.md5 !== stored.md5 || h.sha256 !== stored.sha256 || h.size !== stored.fileSize) {
      this.logger.warn('verify mismatch', { md5: stored.md5, path: p, actualMd5: h.md5, size: h.size });
      return { ok: false, record: this.toRecord(stored), reason: 'mismatch' };
    }
    return this.md5Lock.run(stored.md5, async () => {
      // Re-read: a concurrent commit may have replaced the record meanwhile.
      const cur = this.index.get(stored.md5) ?? stored;
      const updated = { ...cur, verifiedAt: new Date(this.options.now()).toISOString() };
      if (this.index.get(stored.md5)) this.index.put(updated);
      return { ok: true, record: this.toRecord(updated) };
    });
  }

  /** Delete a cached file and its record (full md5 or unique prefix). */
  async remove(md5OrPrefix: string): Promise<MediaRecord> {
    const stored = this.findStored(md5OrPrefix);
    if (!stored) throw new MediaCacheError('E_NOT_FOUND', `no cached file with md5 ${md5OrPrefix}`);
    return this.md5Lock.run(stored.md5, async () => {
      const cur = this.index.get(stored.md5);
      if (!cur) throw new MediaCacheError('E_NOT_FOUND', `no cached file with md5 ${stored.md5}`);
      // File first: if we crash in between, the record points at a missing
      // file, which the next download or sweep repairs; the reverse order
      // would leave an unindexed file that a sweep silently adopts back.
      await dropFile(storePath(this.cacheDir, cur));
      this.index.remove(cur.md5);
      this.logger.info('removed', { md5: cur.md5 });
      return this.toRecord(cur);
    });
  }

  /** The public record shape (SPEC field order) for a stored record. */
  toRecord(stored: StoredRecord, url?: string): MediaRecord {
    const rec: MediaRecord = {
      md5: stored.md5,
      sha256: stored.sha256,
      localPath: storePath(this.cacheDir, stored),
      fileSize: stored.fileSize,
      mimeType: stored.mimeType,
      mediaType: stored.mediaType,
      ...(stored.width !== undefined ? { width: stored.width } : {}),
      ...(stored.height !== undefined ? { height: stored.height } : {}),
      extension: stored.extension,
      url: url ?? stored.urls[0] ?? '',
      urls: [...stored.urls],
      fetchedAt: stored.fetchedAt,
      verifiedAt: stored.verifiedAt,
    };
    if (stored.etag !== undefined) rec.etag = stored.etag;
    if (stored.lastModified !== undefined) rec.lastModified = stored.lastModified;
    for (const k of RECORD_METADATA_KEYS) {
      const v = stored[k];
      if (v !== undefined) (rec as unknown as Record<string, unknown>)[k] = v;
    }
    return rec;
  }

  /** Network fetches running and waiting (for status displays). */
  get activity(): { running: number; queued: number } {
    return { running: this.net.running, queued: this.net.queued };
  }

  /**
   * Stop: abort downloads in flight, wait for them to settle, flush and close
   * the index, close our dispatcher. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flights.abortAll(new MediaCacheError('E_ABORTED', 'cache is closing'));
      try {
        await this.committer.close();
        await this.index.close();
        if (this.ownsDispatcher) await this.dispatcher.close();
      } finally {
        this.lock?.release();
      }
    })();
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing) throw new MediaCacheError('E_UNAVAILABLE', 'the media cache is closed');
  }
}
