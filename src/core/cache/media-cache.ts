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
 * - A URL belongs to one record: EntryStore.put moves it off a record that
 *   listed it before (the origin now serves other content).
 * - Records live behind the EntryStore seam: the embedded IndexDb by default,
 *   PostgreSQL with `database` (cluster mode). In cluster mode several
 *   processes share the content root, so the per-md5 critical section only
 *   orders this process: what keeps one file per content across daemons is
 *   that the file's path is its md5 (an atomic rename of identical bytes) and
 *   that downloads store with upsert (URLs are added, never dropped).
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { MediaCacheError, toMediaCacheError, type ErrorInfo } from '../errors.js';
import type { CacheStats, MediaRecord, StoredRecord, UpstreamChange } from '../types.js';
import type { Logger } from '../util/logger.js';
import { parseMediaUrl } from '../fetch/url.js';
import { createDispatcher, fetchToTmp, type Fetched } from '../fetch/download.js';
import { withRetries } from '../fetch/retry.js';
import { ensureCacheLayout, removeDeadTmp, storePath } from '../content/store.js';
import { GroupCommitter } from '../content/group-commit.js';
import { CLOSE_COMPACT_BYTES, IndexDb } from '../entry-index/index-db.js';
import { EmbeddedEntryStore, type EntryStore, type JobCompletion } from '../entry-index/store.js';
import { PgDatabase } from '../postgres/pg-db.js';
import { PgEntryStore } from '../postgres/pg-store.js';
import { hashFile, isNotRegularFile, type FileHashes } from '../hash/file-hash.js';
import { acquireCacheLock, type CacheLock } from './writer-lock.js';
import { KeyedMutex, mapLimit, Semaphore } from '../util/async-locks.js';
import { SingleFlight, type FlightContext } from './flight.js';
import { checkInt, resolveCacheOptions, type MediaCacheOptions, type MediaCacheSettings } from './options.js';
import { METADATA_FIELDS, METADATA_VERSION } from '../metadata/index.js';
import { readRecordMetadata, withMetadata, type MetadataOutcome } from '../metadata/record.js';
import { QuotaManager } from '../quota/manager.js';
import { reconcileEvicting } from '../quota/evict.js';
import { withUpstreamChange } from '../revalidate/plan.js';
import { refreshUrl, type RefreshOutcome, type RefreshTarget } from '../revalidate/refresh.js';
import type { RpcEvent } from '../protocol/rpc.js';

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
  /** Pin the content once cached (never evicted by the quota). */
  pin?: boolean;
  /**
   * false: resolve once the file is durable under its final name and the
   * record is in the in-memory index, without waiting for the index journal
   * commit; the caller commits (index.flush()) before it reports the
   * download durable (the daemon's scheduler batches that itself). Default
   * true: download() resolves after the journal commit.
   */
  durable?: boolean;
  /**
   * Cluster mode: end this queue job in the same transaction as the record
   * the download commits (see JobCompletion; untouched when no commit was
   * made, e.g. a cache hit, or by a store that cannot).
   */
  completeJob?: JobCompletion;
  /**
   * The caller read the URL map just now and the URL had no record (the
   * cluster's claim reads it with the job): the cache-hit lookup is skipped.
   * Content that appears meanwhile is found by the commit, as in any race.
   */
  knownUncached?: boolean;
}

/** What fetchUrl() takes: `headers` makes a conditional request (no resume). */
export interface FetchUrlOptions {
  signal?: AbortSignal;
  onProgress?: (bytes: number, total?: number) => void;
  retries?: number;
  headers?: Record<string, string>;
}

export interface DownloadManyOptions {
  /** Downloads in flight at once from this call (default 5; the cache's `concurrency` also bounds fetches). */
  maxWorkers?: number;
  force?: boolean;
  signal?: AbortSignal;
  /** Called once per failed URL, as it fails; `index` is its position in `urls`. */
  onError?: (url: string, error: MediaCacheError, index: number) => void;
}

/** One URL of a batch that could not be cached, and why. */
export interface DownloadFailure {
  url: string;
  /** Position in the `urls` given. */
  index: number;
  error: ErrorInfo;
}

export interface DownloadManyResult {
  /** Successes, in input order. */
  records: MediaRecord[];
  /** Failures, in input order. */
  failures: DownloadFailure[];
}

export interface VerifyOutcome {
  ok: boolean;
  record: MediaRecord;
  reason?: 'missing' | 'mismatch';
}

const MD5_PREFIX = /^[0-9a-f]{1,32}$/;
/** File checks (a stat each) lookupFreshMany runs at once. */
const FRESH_CHECKS_AT_ONCE = 16;
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
  readonly index: EntryStore;
  /** The PostgreSQL pool in cluster mode (the daemon's queue shares it); undefined when embedded. */
  readonly database: PgDatabase | undefined;
  /** Resolved options (frozen); the sweeper reads timeoutMs/maxFileSize from here. */
  readonly options: Readonly<MediaCacheSettings>;
  readonly logger: Logger;
  /** The HTTP dispatcher every fetch (and a sweep's re-fetch) goes through. */
  readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  /** Partial downloads (`<cacheDir>/.tmp`, or a per-host folder under it in cluster mode). */
  readonly tmpDir: string;
  private readonly net: Semaphore;
  private readonly md5Lock = new KeyedMutex();
  private readonly flights: SingleFlight<MediaRecord>;
  /** Syncs and renames content files in batches (one worker thread, started on first use). */
  readonly committer = new GroupCommitter();
  private closing: Promise<void> | undefined;
  /** Size quota, uses and eviction (a no-op when no limit is set). */
  readonly quota: QuotaManager;
  /** Emits 'event' with RpcEvents the engine itself raises (`upstream.changed`). */
  readonly events = new EventEmitter();
  /** URLs whose content is pinned as soon as it is cached (add --pin of a queued download). */
  private readonly pinOnCommit = new Set<string>();

  private constructor(
    o: MediaCacheSettings,
    index: EntryStore,
    tmpDir: string,
    dispatcher: Dispatcher,
    ownsDispatcher: boolean,
    private readonly lock: CacheLock | undefined,
    evictionHook?: (md5s: string[]) => Promise<void> | void,
  ) {
    this.options = Object.freeze({ ...o });
    this.logger = o.logger;
    this.cacheDir = o.cacheDir;
    this.indexDir = o.indexDir;
    this.index = index;
    this.database = index instanceof PgEntryStore ? index.db : undefined;
    this.dispatcher = dispatcher;
    this.ownsDispatcher = ownsDispatcher;
    this.tmpDir = tmpDir;
    this.net = new Semaphore(o.concurrency);
    this.flights = new SingleFlight((e) => this.logger.warn('progress callback threw', { error: String(e) }));
    this.quota = new QuotaManager({
      index: index.embedded,
      cacheDir: o.cacheDir,
      logger: o.logger,
      now: o.now,
      lock: this.md5Lock,
      limits: { maxSize: o.maxSize, minFree: o.minFree },
      afterMark: evictionHook,
    });
  }

  static async open(opts: MediaCacheOptions): Promise<MediaCache> {
    const o = resolveCacheOptions(opts);
    const database = opts.database;
    if (database !== undefined && (o.maxSize > 0 || o.minFree > 0)) {
      throw new MediaCacheError('E_BAD_REQUEST', 'cache size limits (maxSize, minFree) are not supported with a database (cluster mode) yet');
    }
    // Cluster mode: several daemons share the content root, so the one-writer
    // lock would refuse all but the first; the database orders the writers.
    const lock = opts.lock === false || database !== undefined ? undefined : acquireCacheLock(o.cacheDir);
    if (lock?.tookOverStale) o.logger.warn('replaced a stale cache lock', { ...lock.tookOverStale });
    let index: EntryStore | undefined;
    try {
      let tmpDir = await ensureCacheLayout(o.cacheDir);
      if (database !== undefined) {
        // Partial files are named by pid, which only means something on this
        // machine: each host of a cluster keeps its own .tmp/ folder.
        tmpDir = path.join(tmpDir, `host-${os.hostname().replace(/[^A-Za-z0-9._-]/g, '_')}`);
        await fs.promises.mkdir(tmpDir, { recursive: true });
      }
      // Leftovers of downloads whose process died (crash, SIGKILL) would otherwise
      // sit in .tmp/ until a sweep ages them out a day later.
      const orphans = await removeDeadTmp(tmpDir);
      if (orphans > 0) o.logger.info(`removed ${orphans} partial download(s) left by a dead process`, { tmpDir });
      if (database !== undefined) {
        const db = database instanceof PgDatabase ? database : await PgDatabase.open({ database, logger: o.logger });
        index = new PgEntryStore(db, !(database instanceof PgDatabase));
      } else {
        const db = await IndexDb.open(o.indexDir, {
          logger: o.logger,
          closeCompactBytes: CLOSE_COMPACT_BYTES,
          ...(opts.flushDelayMs !== undefined ? { flushDelayMs: opts.flushDelayMs } : {}),
        });
        // An eviction or restore cut short by a crash: settle it before anything reads the index.
        await reconcileEvicting(db, o.cacheDir, o.now, o.logger);
        index = new EmbeddedEntryStore(db);
      }
      const own = opts.dispatcher === undefined;
      const dispatcher = opts.dispatcher ?? createDispatcher({ timeoutMs: o.timeoutMs, maxRedirects: o.maxRedirects, policy: o.urlPolicy, lookup: opts.lookup });
      const cache = new MediaCache(o, index, tmpDir, dispatcher, own, lock, opts.onEvictionMarked);
      // Limits may have shrunk since the last run.
      if (cache.quota.enabled) await cache.quota.makeRoom();
      return cache;
    } catch (e) {
      await index?.close().catch(() => {});
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
    if (opts.pin) this.pinOnCommit.add(parsed.href);
    const rec = await this.flights.run(
      parsed.href,
      async (ctx) => {
        if (!force && opts.knownUncached !== true) {
          const hit = await this.lookupFresh(parsed.href);
          if (hit) return hit;
        }
        return this.fetchAndCommit(parsed, ctx, opts.retries, opts.completeJob);
      },
      { fresh: force, signal: opts.signal, onProgress: opts.onProgress },
    ).catch((e: unknown) => {
      if (opts.pin) this.pinOnCommit.delete(parsed.href);
      throw e;
    });
    if (opts.pin) {
      this.pinOnCommit.delete(parsed.href); // answered from the cache: no commit took it
      if (!rec.pinned) return this.setPinned(rec.md5, true, parsed.href);
    }
    // Visible to other processes (and durable) with the journal commit that
    // follows its file's sync; concurrent downloads share one. (A cache hit
    // may be a record another caller just put: it waits for that commit too.)
    if (opts.durable !== false) await this.index.flush();
    return rec;
  }

  /** Pin a URL's content once a queued download of it has been cached (the daemon's add --pin). */
  pinWhenCached(url: string): void {
    this.pinOnCommit.add(parseMediaUrl(url).href);
  }

  /**
   * Pin or unpin by md5 (or unique prefix) or URL; durable once resolved.
   * Pinned content is never evicted; unpinning may let an over-quota cache
   * evict at once.
   */
  async pin(md5OrUrl: string, pinned = true): Promise<MediaRecord> {
    const stored = md5OrUrl.includes('://') ? await this.storedByUrl(md5OrUrl) : await this.findStored(md5OrUrl);
    if (!stored) throw new MediaCacheError('E_NOT_FOUND', `nothing cached for ${md5OrUrl}`);
    const rec = await this.setPinned(stored.md5, pinned, md5OrUrl.includes('://') ? parseMediaUrl(md5OrUrl).href : undefined);
    if (!pinned && this.quota.enabled) await this.quota.makeRoom();
    return rec;
  }

  private async setPinned(md5: string, pinned: boolean, url?: string): Promise<MediaRecord> {
    const rec = await this.md5Lock.run(md5, async () => {
      const cur = await this.index.get(md5);
      if (!cur) throw new MediaCacheError('E_NOT_FOUND', `no record with md5 ${md5}`);
      const next: StoredRecord = { ...cur };
      if (pinned) next.pinned = true;
      else delete next.pinned;
      await this.index.put(next);
      return next;
    });
    await this.index.flush();
    this.logger.info(pinned ? 'pinned' : 'unpinned', { md5 });
    return this.toRecord(rec, url);
  }

  private storedByUrl(url: string): Promise<StoredRecord | undefined> {
    return this.index.getByUrl(parseMediaUrl(url).href);
  }

  /**
   * Ask the origin whether content changed (If-None-Match / If-Modified-Since):
   * by URL, or by md5 (or prefix) for every URL of the record. See revalidate.ts.
   */
  async refresh(urlOrMd5: string, opts: { signal?: AbortSignal } = {}): Promise<RefreshOutcome[]> {
    this.assertOpen();
    let urls: string[];
    if (urlOrMd5.includes('://')) urls = [parseMediaUrl(urlOrMd5).href];
    else {
      const stored = await this.findStored(urlOrMd5);
      if (!stored) throw new MediaCacheError('E_NOT_FOUND', `no cached file with md5 ${urlOrMd5}`);
      if (stored.urls.length === 0) throw new MediaCacheError('E_NOT_FOUND', `no URL is known for ${stored.md5} (adopted file); nothing to ask`);
      urls = [...stored.urls];
    }
    const out: RefreshOutcome[] = [];
    for (const u of urls) out.push(await refreshUrl(this.refreshTarget, u, opts.signal));
    await this.index.flush();
    return out;
  }

  private get refreshTarget(): RefreshTarget {
    return {
      index: this.index,
      fetchUrl: (url, o) => this.fetchUrl(url, o),
      commitFetched: (f, href) => this.commitFetched(f, href),
      toRecord: (st, u) => this.toRecord(st, u),
      now: () => this.options.now(),
    };
  }


  /** Tell listeners (the daemon's subscribers) about an engine event. */
  emitEvent(ev: RpcEvent): void {
    try {
      this.events.emit('event', ev);
    } catch (e) {
      this.logger.warn('event listener threw', { error: String(e) });
    }
  }

  /**
   * The cache-hit decision, the one place it is made (download(), the
   * daemon's `add`): the record for a URL, only when its file is present
   * with the recorded size. A record whose file was deleted or replaced is
   * not a hit: the caller fetches again (and the fresh copy repairs it).
   * Evicted content is not a hit either. Invalid URLs throw E_INVALID_URL /
   * E_UNSUPPORTED_SCHEME.
   */
  async lookupFresh(url: string): Promise<MediaRecord | undefined> {
    const href = parseMediaUrl(url).href;
    return this.freshHit(href, await this.index.getByUrl(href));
  }

  /**
   * lookupFresh() of many URLs (the daemon's `add`): one index read for all
   * (one round trip per 1,000 on PostgreSQL), then the file checks, 16 at a
   * time. Results in input order; an invalid URL rejects the whole call, so
   * parse them first.
   */
  async lookupFreshMany(urls: readonly string[]): Promise<Array<MediaRecord | undefined>> {
    const hrefs = urls.map((u) => parseMediaUrl(u).href);
    const stored = await this.index.getManyByUrl(hrefs);
    return mapLimit(hrefs, FRESH_CHECKS_AT_ONCE, (href) => this.freshHit(href, stored.get(href)));
  }

  private async freshHit(href: string, stored: StoredRecord | undefined): Promise<MediaRecord | undefined> {
    if (!stored) return undefined;
    if (stored.evictedAt !== undefined || stored.evicting) {
      this.logger.info('cached content was evicted; downloading it again', { url: href, md5: stored.md5, evictedAt: stored.evictedAt });
      return undefined;
    }
    const p = storePath(this.cacheDir, stored);
    if ((await fileSize(p)) === stored.fileSize) {
      this.logger.debug('cache hit', { url: href, md5: stored.md5 });
      this.quota.touch(stored.md5);
      // touch() may have rewritten the embedded record (lastUsedAt); elsewhere it writes nothing and `stored` is current.
      return this.toRecord((this.index.embedded ? await this.index.get(stored.md5) : undefined) ?? stored, href);
    }
    this.logger.warn('cached file missing or wrong size; fetching again', { url: href, md5: stored.md5, path: p });
    return undefined;
  }

  private async fetchAndCommit(parsed: URL, ctx: FlightContext, retries: number | undefined, completion?: JobCompletion): Promise<MediaRecord> {
    // The network slot is held until the file is published (written and
    // synced), as it was when each download synced its own file: the slots
    // bound how many bodies wait in memory or unsynced in .tmp/.
    const release = await this.net.acquire(ctx.signal);
    try {
      const fetched = await this.fetchHeld(parsed, {
        signal: ctx.signal,
        onProgress: ctx.progress,
        retries,
        memoryMax: SMALL_BODY_MAX,
        sync: false, // the group commit syncs it before the rename
      });
      return await this.commitNew(fetched, parsed.href, ctx.fresh, ctx.signal, completion);
    } finally {
      release();
    }
  }

  /**
   * One fetch into `.tmp/` through the network limit, with retries (and
   * resume of large partial downloads, see resume.ts). The file is synced;
   * the caller commits or drops it.
   */
  async fetchUrl(parsed: URL, opts: FetchUrlOptions = {}): Promise<Fetched> {
    const release = await this.net.acquire(opts.signal);
    try {
      return await this.fetchHeld(parsed, opts);
    } finally {
      release();
    }
  }

  /** fetchUrl() with the network slot already held. */
  private fetchHeld(parsed: URL, opts: FetchUrlOptions & { memoryMax?: number; sync?: boolean }): Promise<Fetched> {
    this.assertOpen();
    const href = parsed.href;
    const { signal } = opts;
    const o = this.options;
    return withRetries(
      () =>
        fetchToTmp(parsed, {
          tmpDir: this.tmpDir,
          dispatcher: this.dispatcher,
          timeoutMs: o.timeoutMs,
          maxFileSize: o.maxFileSize,
          ...(o.maxSize > 0 ? { quotaBytes: o.maxSize } : {}),
          ...(opts.headers ? { headers: opts.headers } : { resumable: true }),
          signal,
          onProgress: opts.onProgress,
          ...(opts.memoryMax !== undefined ? { memoryMax: opts.memoryMax, bodyBuffer: this.bodyBuffer } : {}),
          ...(opts.sync !== undefined ? { sync: opts.sync } : {}),
        }),
      {
        retries: opts.retries ?? o.retries,
        baseDelayMs: o.retryBaseDelayMs,
        maxDelayMs: o.retryMaxDelayMs,
        maxRetryAfterMs: o.maxRetryAfterMs,
        signal,
        onRetry: (err, attempt, delayMs) => this.logger.info('retrying download', { url: href, attempt, delayMs, code: err.code, error: err.message }),
      },
    );
  }

  private async commitNew(fetched: Fetched, href: string, forced: boolean, signal?: AbortSignal, completion?: JobCompletion): Promise<MediaRecord> {
    let unreserve: (() => void) | undefined;
    try {
      // Room for the new bytes first (evicting least recently used content), so the cache never holds more than its quota.
      unreserve = await this.quota.reserve(fetched.size, href);
      return await this.md5Lock.run(fetched.md5, () => this.commit(fetched, href, forced, signal, completion));
    } catch (e) {
      // commit() renames or drops the tmp file when it succeeds; on failure it may be left.
      if (!fetched.body) await dropFile(fetched.tmpPath);
      throw e;
    } finally {
      unreserve?.();
    }
  }

  /**
   * Media metadata of a fetched file (its tmp copy, while the page cache still
   * holds it), unless the content is already indexed with it. Never fails the
   * download: a damaged container is stored without metadata.
   */
  private async metadataFor(f: Fetched, href: string, existing: StoredRecord | undefined, signal: AbortSignal | undefined): Promise<MetadataOutcome | undefined> {
    const known = existing?.metadataVersion;
    if (known !== undefined && known >= METADATA_VERSION) return undefined;
    return readRecordMetadata(f.tmpPath, { md5: f.md5, ...f.sniffed }, this.logger, {
      timeoutMs: this.options.timeoutMs,
      ...(signal ? { signal } : {}),
      url: href,
      ...(f.head ? { head: { bytes: f.head, size: f.size } } : {}),
    });
  }

  /**
   * Commit fetched bytes for `href` (revalidation's 200 path): as a download
   * does, including the quota. Returns the record and, when the URL now
   * serves other content, the change.
   */
  async commitFetched(f: Fetched, href: string): Promise<{ record: MediaRecord; change?: UpstreamChange }> {
    const before = await this.index.md5ForUrl(href);
    let unreserve: (() => void) | undefined;
    try {
      unreserve = await this.quota.reserve(f.size, href);
      const record = await this.md5Lock.run(f.md5, () => this.commit(f, href, false, undefined));
      const change = before !== undefined && before !== f.md5 ? record.upstreamChanges?.findLast((c) => c.url === href && c.from === before) : undefined;
      return change ? { record, change } : { record };
    } catch (e) {
      await dropFile(f.tmpPath);
      throw e;
    } finally {
      unreserve?.();
    }
  }

  /**
   * The URL moved to `md5` from another record: note the change on both
   * (find shows it) and tell listeners. Runs after the new record's put.
   */
  private async noteUpstreamChange(change: UpstreamChange): Promise<void> {
    const old = await this.index.get(change.from);
    if (old) await this.index.put(withUpstreamChange(old, change));
    this.logger.warn('content changed upstream: the URL now serves other content', { ...change });
    this.emitEvent({ type: 'upstream.changed', change });
  }

  /**
   * Inside the md5's critical section: dedup, collision check, or new entry.
   * One index read (the record and the URL's current md5) serves every check
   * and the metadata decision; a second download of the same content waits
   * here and then finds the metadata already recorded.
   */
  private async commit(f: Fetched, href: string, forced: boolean, signal: AbortSignal | undefined, completion?: JobCompletion): Promise<MediaRecord> {
    const { record: existing, urlMd5: prevMd5 } = await this.index.getWithUrl(f.md5, href);
    const nowIso = new Date(this.options.now()).toISOString();
    const change: UpstreamChange | undefined = prevMd5 !== undefined && prevMd5 !== f.md5 ? { url: href, from: prevMd5, to: f.md5, at: nowIso } : undefined;
    const pin = this.pinOnCommit.delete(href);
    if (existing && (existing.evictedAt !== undefined || existing.evicting) && existing.sha256 === f.sha256) {
      return this.restore(existing, f, href, nowIso, change, pin, completion);
    }
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
      const meta = await this.metadataFor(f, href, existing, signal);
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
      let updated: StoredRecord = {
        ...withMetadata(existing, meta),
        urls: existing.urls.includes(href) ? existing.urls : [...existing.urls, href],
        fetchedAt: nowIso,
        verifiedAt: nowIso,
        lastUsedAt: nowIso,
      };
      if (f.etag !== undefined) updated.etag = f.etag;
      if (f.lastModified !== undefined) updated.lastModified = f.lastModified;
      if (pin) updated.pinned = true;
      if (change) updated = withUpstreamChange(updated, change);
      await this.index.upsert(updated, completion);
      if (change) await this.noteUpstreamChange(change);
      this.logger.debug('deduplicated', { url: href, md5: f.md5 });
      return this.toRecord(updated, href);
    }
    const meta = await this.metadataFor(f, href, undefined, signal);
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
    rec.lastUsedAt = nowIso;
    if (pin) rec.pinned = true;
    const withMeta = withMetadata(rec, meta);
    const finalPath = storePath(this.cacheDir, withMeta);
    await this.publish(f, finalPath);
    const stored = change ? withUpstreamChange(withMeta, change) : withMeta;
    await this.index.upsert(stored, completion);
    if (change) await this.noteUpstreamChange(change);
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
   * Evicted content downloaded again: flagged `evicting` (durably) around
   * the file's return, so a crash in between is settled at open by what is
   * on disk (see evict.ts).
   */
  private async restore(existing: StoredRecord, f: Fetched, href: string, nowIso: string, change: UpstreamChange | undefined, pin: boolean, completion?: JobCompletion): Promise<MediaRecord> {
    await this.index.put({ ...existing, evicting: true });
    await this.index.flush();
    await this.publish(f, storePath(this.cacheDir, existing));
    const { evicting: _e, evictedAt: _ev, ...rest } = existing;
    let rec: StoredRecord = {
      ...rest,
      urls: existing.urls.includes(href) ? existing.urls : [...existing.urls, href],
      fetchedAt: nowIso,
      verifiedAt: nowIso,
      lastUsedAt: nowIso,
      restoredAt: nowIso,
    };
    if (f.etag !== undefined) rec.etag = f.etag;
    if (f.lastModified !== undefined) rec.lastModified = f.lastModified;
    if (pin) rec.pinned = true;
    if (change) rec = withUpstreamChange(rec, change);
    await this.index.upsert(rec, completion);
    if (change) await this.noteUpstreamChange(change);
    this.logger.info('evicted content downloaded again', { url: href, md5: rec.md5, evictedAt: existing.evictedAt, size: rec.fileSize });
    return this.toRecord(rec, href);
  }

  /**
   * Download many URLs with at most `maxWorkers` at a time (network fetches
   * are also bounded by the instance's `concurrency`). Returns the successes
   * in input order; each failure is logged with its code.
   */
  /**
   * Download many URLs with at most `maxWorkers` in flight (default 5):
   * the records of the successes, in input order. A failure never rejects the
   * batch: it is logged at warn and handed to `onError`; use downloadManySettled
   * to get the failures as data.
   */
  async downloadMany(urls: string[], opts: DownloadManyOptions = {}): Promise<MediaRecord[]> {
    return (await this.downloadManySettled(urls, opts)).records;
  }

  /** As downloadMany, and also the failures: `{url, index, error: {code, message, status?}}` in input order. */
  async downloadManySettled(urls: string[], opts: DownloadManyOptions = {}): Promise<DownloadManyResult> {
    this.assertOpen();
    if (!Array.isArray(urls)) throw new MediaCacheError('E_BAD_REQUEST', 'downloadMany expects an array of URLs');
    if (opts.onError !== undefined && typeof opts.onError !== 'function') throw new MediaCacheError('E_BAD_REQUEST', 'onError must be a function');
    const workers = opts.maxWorkers ?? 5;
    checkInt('maxWorkers', workers, 1);
    const results: Array<MediaRecord | DownloadFailure | undefined> = new Array(urls.length);
    let next = 0;
    const work = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        if (i >= urls.length) return;
        const url = String(urls[i]);
        try {
          // The index commit is awaited once at the end: a worker goes on to
          // its next URL as soon as this one's file is durable.
          results[i] = await this.download(url, { force: opts.force, signal: opts.signal, durable: false });
        } catch (e) {
          const err = toMediaCacheError(e, url);
          results[i] = { url, index: i, error: err.toJSON() };
          this.logger.warn('download failed', { url, code: err.code, status: err.status, error: err.message });
          try {
            opts.onError?.(url, err, i);
          } catch (cbErr) {
            // The caller's callback must not stop the other downloads.
            this.logger.warn('onError callback threw', { url, error: String(cbErr) });
          }
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
    const records: MediaRecord[] = [];
    const failures: DownloadFailure[] = [];
    for (const r of results) {
      if (r === undefined) continue;
      if ('error' in r && 'index' in r) failures.push(r);
      else records.push(r);
    }
    return { records, failures };
  }

  async stats(): Promise<CacheStats> {
    const s = await this.index.stats();
    if (this.quota.enabled) s.quota = this.quota.status();
    return s;
  }

  /** Full md5 or a unique prefix; undefined when none matches. Evicted records are found too (`evictedAt` says so). */
  async find(md5OrPrefix: string): Promise<MediaRecord | undefined> {
    const stored = await this.findStored(md5OrPrefix);
    if (stored && stored.evictedAt === undefined) this.quota.touch(stored.md5);
    return stored && this.toRecord(stored);
  }

  /** find() of many full md5s in one index read (one round trip per 1,000 on PostgreSQL), by md5; unknown ones left out. */
  async findMany(md5s: readonly string[]): Promise<Map<string, MediaRecord>> {
    const out = new Map<string, MediaRecord>();
    for (const [md5, stored] of await this.index.getMany(md5s.map((m) => m.toLowerCase()))) {
      if (stored.evictedAt === undefined) this.quota.touch(md5);
      out.set(md5, this.toRecord(stored));
    }
    return out;
  }

  private async findStored(md5OrPrefix: string): Promise<StoredRecord | undefined> {
    const key = typeof md5OrPrefix === 'string' ? md5OrPrefix.trim().toLowerCase() : '';
    if (!MD5_PREFIX.test(key)) {
      throw new MediaCacheError('E_BAD_REQUEST', `not an md5 or md5 prefix (1-32 hex digits): "${String(md5OrPrefix)}"`);
    }
    if (key.length === 32) return this.index.get(key);
    const hits = await this.index.findByPrefix(key, 2);
    if (hits.length > 1) {
      throw new MediaCacheError('E_AMBIGUOUS', `md5 prefix "${key}" matches several cached files; give more digits`);
    }
    return hits[0];
  }

  async findByUrl(url: string): Promise<MediaRecord | undefined> {
    const href = parseMediaUrl(url).href;
    const stored = await this.index.getByUrl(href);
    if (stored && stored.evictedAt === undefined) this.quota.touch(stored.md5);
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
      if ((e as NodeJS.ErrnoException).code === 'EISDIR' || isNotRegularFile(e)) return false;
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
    const stored = await this.findStored(md5OrPrefix);
    if (!stored) throw new MediaCacheError('E_NOT_FOUND', `no cached file with md5 ${md5OrPrefix}`);
    if (stored.evictedAt !== undefined) throw new MediaCacheError('E_NOT_FOUND', `${stored.md5} was evicted (${stored.evictedAt}); add one of its URLs to download it again`);
    const p = storePath(this.cacheDir, stored);
    // Held: eviction skips a file being read.
    const unhold = this.quota.hold(stored.md5);
    let h: FileHashes | undefined;
    try {
      h = await (opts.hasher ?? hashFile)(p);
    } catch (e) {
      if (!isNotRegularFile(e)) throw e;
      // A FIFO, device or folder in the file's place: not its content (the sweep quarantines it).
      this.logger.warn('verify: not a regular file', { md5: stored.md5, path: p });
      return { ok: false, record: this.toRecord(stored), reason: 'mismatch' };
    } finally {
      unhold();
    }
    if (!h) return { ok: false, record: this.toRecord(stored), reason: 'missing' };
    if (h.md5 !== stored.md5 || h.sha256 !== stored.sha256 || h.size !== stored.fileSize) {
      this.logger.warn('verify mismatch', { md5: stored.md5, path: p, actualMd5: h.md5, size: h.size });
      return { ok: false, record: this.toRecord(stored), reason: 'mismatch' };
    }
    return this.md5Lock.run(stored.md5, async () => {
      // Re-read: a concurrent commit may have replaced the record meanwhile.
      const now = await this.index.get(stored.md5);
      const updated = { ...(now ?? stored), verifiedAt: new Date(this.options.now()).toISOString() };
      if (now) await this.index.put(updated);
      this.quota.touch(stored.md5);
      return { ok: true, record: this.toRecord(updated) };
    });
  }

  /** Delete a cached file and its record (full md5 or unique prefix). */
  async remove(md5OrPrefix: string): Promise<MediaRecord> {
    const stored = await this.findStored(md5OrPrefix);
    if (!stored) throw new MediaCacheError('E_NOT_FOUND', `no cached file with md5 ${md5OrPrefix}`);
    return this.md5Lock.run(stored.md5, async () => {
      const cur = await this.index.get(stored.md5);
      if (!cur) throw new MediaCacheError('E_NOT_FOUND', `no cached file with md5 ${stored.md5}`);
      // File first: if we crash in between, the record points at a missing
      // file, which the next download or sweep repairs; the reverse order
      // would leave an unindexed file that a sweep silently adopts back.
      await dropFile(storePath(this.cacheDir, cur));
      await this.index.remove(cur.md5);
      this.logger.info('removed', { md5: cur.md5 });
      return this.toRecord(cur);
    });
  }

  /** The public record shape (documented field order) for a stored record. */
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
    if (stored.lastUsedAt !== undefined) rec.lastUsedAt = stored.lastUsedAt;
    if (stored.pinned) rec.pinned = true;
    if (stored.evictedAt !== undefined) rec.evictedAt = stored.evictedAt;
    if (stored.restoredAt !== undefined) rec.restoredAt = stored.restoredAt;
    if (stored.revalidatedAt !== undefined) rec.revalidatedAt = stored.revalidatedAt;
    if (stored.upstreamChanges?.length) rec.upstreamChanges = stored.upstreamChanges.map((c) => ({ ...c }));
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
        await this.quota.idle();
        this.quota.writeTouches();
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
