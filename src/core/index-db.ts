/**
 * The cache index: every distinct content (by md5) with its URLs, kept in
 * memory and persisted as lowdb shards.
 *
 * Layout of the index dir:
 *   meta.json          {"schemaVersion":1,"shardDigits":2,"createdAt":…}
 *   records/xx.jsonl   records whose md5 starts with xx (256 shards): a header
 *                      line, then one record per line as a compact JSON array
 * One lowdb file cannot hold a large cache (DEPS §7: a 1M-record write blocks
 * ~9 s), so a write touches only the shards that changed: at 1M records a
 * shard is ~4k records, ~1 MB, and writing it is a join of its rows.
 * Each shard is a lowdb `Low` over a DurableDataFile (index-record.ts has the
 * format; durable-file.ts the crash-safe write; index-state.ts the in-memory
 * records, url map and stats; index-files.ts the recovery of damaged files).
 * This module is the persistence: open/load, coalesced flushes, close.
 *
 * The URL→md5 map is NOT persisted: it is derived from the records' `urls` at
 * open. Building it costs less than parsing a persisted copy would, and a map
 * that is never written can never disagree with the records after a crash.
 * Stats are derived the same way and then maintained incrementally.
 *
 * Writes are coalesced: put/addUrl/remove change memory synchronously, mark the
 * shard dirty and schedule one flush `flushDelayMs` later; the flush writes each
 * dirty shard once (temp + fsync + rename + dir fsync). Flushes are serialized,
 * so one shard is never written twice at the same time; a mutation during a
 * flush re-dirties its shard for the next one.
 *
 * Crash invariant (with the store): every shard on disk is a complete old or
 * new version. The store renames a content file into place BEFORE put(), so
 * the index never durably names a file that was never written; a crash before
 * the flush leaves a file without a record, which the sweep adopts. A record
 * whose file is missing (deleted by hand, or a remove whose unlink ran but
 * whose index flush did not) is repaired by the sweep. Whichever order a
 * caller removes in, a crash in between leaves one of those two cases, never
 * a damaged index (MediaCache unlinks first, on purpose: see cache.ts).
 *
 * A URL belongs to one record: putting or adding a URL already held by another
 * md5 moves it (the old record drops it). If a crash leaves two shards both
 * claiming a URL, open keeps it on the later fetch and rewrites the loser.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Low } from 'lowdb';
import { DurableDataFile, DurableJSONFile, fsyncDir } from './durable-file.js';
import { moveAside, readOrRecover, removeStaleTemps, type Recovery } from './index-files.js';
import { MediaCacheError, toMediaCacheError } from './errors.js';
import { SHARD_COUNT, SHARD_DIGITS, SHARD_FORMAT, shardName, type ShardData } from './index-record.js';
import { IndexState } from './index-state.js';
import { silentLogger, type Logger } from './logger.js';
import type { CacheStats, StoredRecord } from './types.js';

export const SCHEMA_VERSION = 1;

interface MetaFile {
  schemaVersion: number;
  shardDigits: number;
  createdAt: string;
}

export interface IndexDbOptions {
  /** Delay between the first unflushed change and its write (default 200 ms). */
  flushDelayMs?: number;
  logger?: Logger;
  /** Shard files read in parallel at open (default 4). */
  readConcurrency?: number;
  /** Shard files written in parallel by one flush (default 4, the size of libuv's pool). */
  writeConcurrency?: number;
  /** Clock for meta.json and moved-aside names (tests). */
  now?: () => Date;
}

/** Counters for tests, benchmarks and status output. */
export interface IndexDiagnostics {
  /** Shard files written since open (meta.json excluded). */
  shardWrites: number;
  /** Flushes that wrote at least one file. */
  flushes: number;
  /** Duration of the last such flush. */
  lastFlushMs: number;
  /** Duration of open(). */
  openMs: number;
}

const EMPTY_SHARD: ShardData = { rows: [] };
/** Upper bound of the adaptive flush delay (see markDirty). */
const MAX_ADAPTIVE_DELAY_MS = 5000;

export class IndexDb {
  readonly dir: string;
  readonly recovered: string[] = [];
  readonly diagnostics: IndexDiagnostics = { shardWrites: 0, flushes: 0, lastFlushMs: 0, openMs: 0 };
  private createdFresh = false;
  private metaMissing = false;

  /** Records, url map and stats in memory (index-state.ts). */
  private readonly state: IndexState;
  private readonly lows: Low<ShardData>[] = [];
  private readonly meta: Low<MetaFile>;

  private readonly flushDelayMs: number;
  private readonly logger: Logger;
  private readonly readConcurrency: number;
  private readonly writeConcurrency: number;
  private readonly now: () => Date;
  private readonly recovery: Recovery;

  private readonly dirty = new Set<number>();
  private metaDirty = false;
  private timer: NodeJS.Timeout | undefined;
  private retryDelayMs = 0;
  /** The running flush (or a resolved promise); flushes run one after another. */
  private chain: Promise<void> = Promise.resolve();
  /** A flush queued behind the running one; later flush() calls join it. */
  private queued: Promise<void> | undefined;
  private closed = false;

  private constructor(dir: string, opts: IndexDbOptions) {
    this.dir = dir;
    this.flushDelayMs = opts.flushDelayMs ?? 200;
    this.logger = opts.logger ?? silentLogger;
    this.readConcurrency = Math.max(1, opts.readConcurrency ?? 4);
    this.writeConcurrency = Math.max(1, opts.writeConcurrency ?? 4);
    this.now = opts.now ?? (() => new Date());
    this.recovery = { logger: this.logger, now: this.now, recovered: this.recovered };
    if (!(this.flushDelayMs >= 0)) throw new MediaCacheError('E_BAD_REQUEST', 'flushDelayMs must be >= 0');
    this.state = new IndexState((i) => this.markDirty(i), this.logger);
    for (let i = 0; i < SHARD_COUNT; i++) {
      this.lows.push(new Low<ShardData>(new DurableDataFile(this.shardPath(i), SHARD_FORMAT, { syncDir: false }), EMPTY_SHARD));
    }
    const meta: MetaFile = { schemaVersion: SCHEMA_VERSION, shardDigits: SHARD_DIGITS, createdAt: this.now().toISOString() };
    this.meta = new Low<MetaFile>(new DurableJSONFile(join(dir, 'meta.json')), meta);
  }

  static async open(dir: string, opts: IndexDbOptions = {}): Promise<IndexDb> {
    const db = new IndexDb(dir, opts);
    const t0 = performance.now();
    try {
      await db.load();
    } catch (e) {
      if (e instanceof MediaCacheError) throw e;
      throw new MediaCacheError('E_UNAVAILABLE', `cannot open index ${dir}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    }
    db.diagnostics.openMs = performance.now() - t0;
    return db;
  }

  /** Index missing or damaged: the caller should run an adopting sweep. */
  get needsRebuild(): boolean {
    return this.recovered.length > 0 || this.createdFresh || this.metaMissing;
  }

  get size(): number {
    return this.state.size;
  }

  get(md5: string): StoredRecord | undefined {
    return this.state.get(md5);
  }

  has(md5: string): boolean {
    return this.state.has(md5);
  }

  md5ForUrl(url: string): string | undefined {
    return this.state.md5ForUrl(url);
  }

  /** Records whose md5 starts with `prefix` (1..32 hex digits, any case), in md5 order; E_BAD_REQUEST otherwise. */
  findByPrefix(prefix: string, limit = Infinity): StoredRecord[] {
    return this.state.findByPrefix(prefix, limit);
  }

  /** Insert or replace the record for rec.md5; its URLs now point to it (moved off other records). */
  put(rec: StoredRecord): void {
    this.assertOpen();
    this.state.put(rec);
  }

  /** Record one more URL for existing content (E_NOT_FOUND when md5 is unknown). */
  addUrl(md5: string, url: string): void {
    this.assertOpen();
    this.state.addUrl(md5, url);
  }

  remove(md5: string): StoredRecord | undefined {
    this.assertOpen();
    return this.state.remove(md5);
  }

  /** Every record, shard by shard (fresh copies; changes during iteration are allowed). */
  records(): IterableIterator<StoredRecord> {
    return this.state.records();
  }

  /** Every md5, without decoding records (cheaper than records()). */
  md5s(): IterableIterator<string> {
    return this.state.md5s();
  }

  /** O(1): maintained incrementally. */
  stats(): CacheStats {
    return this.state.stats();
  }

  /** Write every dirty shard now; resolves once all are durable. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.queued) return this.queued;
    const run = this.chain.then(() => {
      this.queued = undefined;
      return this.writeDirty();
    });
    this.queued = run;
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Flush and stop accepting changes. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return this.chain;
    try {
      await this.flush();
    } finally {
      // Even when the last flush failed (it rejects to tell the caller): no
      // retry timer may outlive close().
      this.closed = true;
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  // ---- internals ----

  private shardPath(i: number): string {
    return join(this.dir, 'records', `${shardName(i)}.jsonl`);
  }

  private assertOpen(): void {
    if (this.closed) throw new MediaCacheError('E_UNAVAILABLE', 'index is closed');
  }

  private markDirty(i: number): void {
    this.dirty.add(i);
    // Adaptive coalescing: wait at least 4x as long as the last flush took, so
    // a stream of updates spread over many shards (a sweep refreshing
    // verifiedAt on a 1M index) keeps index writes to ~20% of the time
    // instead of rewriting every shard every flushDelayMs. flush() is always
    // immediate.
    this.schedule(Math.max(this.flushDelayMs, Math.min(MAX_ADAPTIVE_DELAY_MS, this.diagnostics.lastFlushMs * 4)));
  }

  /**
   * Arm the flush timer. The normal timer keeps the process alive so a short
   * script's last records reach disk; a retry after a failure does not (a
   * full disk must not keep a finished process running forever).
   */
  private schedule(delayMs: number, retry = false): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((e: unknown) => {
        this.logger.error('index flush failed; will retry', { error: (e as Error)?.message ?? String(e) });
      });
    }, delayMs);
    if (retry) this.timer.unref();
  }

  private async writeDirty(): Promise<void> {
    let errors = await this.writeDirtyOnce();
    if (errors.some((e) => (e as NodeJS.ErrnoException)?.code === 'ENOENT')) {
      // The index directory vanished under a running process (deleted by
      // hand): recreate it and write everything held in memory, so the disk
      // matches memory again instead of failing forever.
      this.logger.warn('index: directory missing while writing; recreating it from memory', { dir: this.dir });
      await mkdir(join(this.dir, 'records'), { recursive: true });
      this.metaDirty = true;
      for (let i = 0; i < SHARD_COUNT; i++) if (this.state.shardSize(i) > 0) this.dirty.add(i);
      errors = await this.writeDirtyOnce();
    }
    if (errors.length > 0) {
      // Keep the data dirty and retry with backoff; the caller of flush() learns now.
      this.retryDelayMs = Math.min(30_000, Math.max(1000, this.retryDelayMs * 2));
      this.schedule(this.retryDelayMs, true);
      throw toMediaCacheError(errors[0]);
    }
    this.retryDelayMs = 0;
  }

  /** Write meta (when needed) and every dirty shard once; returns the errors (their shards stay dirty). */
  private async writeDirtyOnce(): Promise<unknown[]> {
    const todo = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    const writeMeta = this.metaDirty;
    this.metaDirty = false;
    const errors: unknown[] = [];
    if (todo.length === 0 && !writeMeta) return errors;
    const t0 = performance.now();
    if (writeMeta) {
      try {
        await this.meta.write();
      } catch (e) {
        this.metaDirty = true;
        errors.push(e);
      }
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const i = todo[next++];
        const low = this.lows[i];
        // Low.write() hands data to the adapter, which serializes before its
        // first await: the bytes are the shard as of this line.
        low.data = { rows: this.state.shardRows(i) };
        try {
          await low.write();
          this.diagnostics.shardWrites++;
        } catch (e) {
          this.dirty.add(i);
          errors.push(e);
        } finally {
          low.data = EMPTY_SHARD;
        }
      }
    };
    await Promise.all(Array.from({ length: this.writeConcurrency }, worker));
    // Shards skip their own directory fsync: one for the whole batch makes every
    // rename above durable (all shards live in one directory).
    if (todo.length > 0) {
      try {
        await fsyncDir(dirname(this.shardPath(todo[0])));
      } catch (e) {
        for (const i of todo) this.dirty.add(i);
        errors.push(e);
      }
    }
    this.diagnostics.flushes++;
    this.diagnostics.lastFlushMs = performance.now() - t0;
    return errors;
  }

  private async load(): Promise<void> {
    const recordsDir = join(this.dir, 'records');
    let existed = true;
    try {
      await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      existed = false;
    }
    await mkdir(recordsDir, { recursive: true });
    await removeStaleTemps(this.dir);
    const shardFiles = new Set(await removeStaleTemps(recordsDir));

    const meta = await this.readFile(this.meta.adapter as DurableJSONFile<MetaFile>, isMeta);
    if (meta === undefined) {
      this.metaDirty = true;
      // No meta and no shards: a new index (or one deleted whole); meta
      // missing beside shards: something removed it, so ask for a sweep too.
      if ([...shardFiles].some((f) => f.endsWith('.jsonl'))) this.metaMissing = true;
      else this.createdFresh = true;
      if (!existed) this.createdFresh = true;
    } else {
      if (meta.schemaVersion > SCHEMA_VERSION) {
        throw new MediaCacheError('E_UNAVAILABLE', `index ${this.dir} has schemaVersion ${meta.schemaVersion}; this version reads up to ${SCHEMA_VERSION}`);
      }
      if (meta.shardDigits !== SHARD_DIGITS) {
        throw new MediaCacheError('E_UNAVAILABLE', `index ${this.dir} uses ${meta.shardDigits}-digit shards; expected ${SHARD_DIGITS}`);
      }
      this.meta.data = meta;
    }

    // Reads (I/O + line split) run ahead up to readConcurrency shards; the
    // rows are validated and taken one shard per event-loop turn, so the loop
    // is blocked for one shard's parse at most (~tens of ms at 1M records),
    // never for the whole index.
    const present = Array.from({ length: SHARD_COUNT }, (_, i) => i).filter((i) => shardFiles.has(`${shardName(i)}.jsonl`));
    const reads: (Promise<ShardData | undefined> | undefined)[] = [];
    let started = 0;
    for (let k = 0; k < present.length; k++) {
      for (; started < present.length && started <= k + this.readConcurrency; started++) {
        const adapter = this.lows[present[started]].adapter as DurableDataFile<ShardData>;
        const read = this.readFile(adapter, (d): d is ShardData => true);
        read.catch(() => undefined); // awaited below, in order; no unhandled-rejection window
        reads.push(read);
      }
      const i = present[k];
      const data = await reads[k];
      reads[k] = undefined;
      if (data && !this.state.loadShard(i, data.rows)) {
        await this.moveAside((this.lows[i].adapter as DurableDataFile<ShardData>).filename, 'invalid record');
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    // Fresh meta, or shards changed while loading (URL conflicts): write them now.
    if (this.metaDirty || this.dirty.size > 0) await this.flush();
  }

  /** Read one index file; a damaged one is moved aside and recorded in `recovered`. */
  private readFile<T>(adapter: DurableDataFile<T>, valid: (d: unknown) => d is T): Promise<T | undefined> {
    return readOrRecover(adapter, valid, this.recovery);
  }

  private async moveAside(file: string, why: string): Promise<void> {
    await moveAside(file, why, this.recovery);
  }
}

function isMeta(d: unknown): d is MetaFile {
  const m = d as MetaFile;
  return typeof d === 'object' && d !== null && Number.isInteger(m.schemaVersion) && Number.isInteger(m.shardDigits);
}
