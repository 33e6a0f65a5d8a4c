/**
 * The cache index: every distinct content (by md5) with its URLs, kept in
 * memory and persisted as lowdb shards plus an append-only journal.
 *
 * Layout of the index dir:
 *   meta.json          {"schemaVersion":3,"shardDigits":2,"createdAt":…}
 *   records/xx.jsonl   records whose md5 starts with xx (256 shards): a header
 *                      line, then one record per line as a compact JSON array
 *   journal.jsonl      changes since the shards were last written: one batch
 *                      of records / removals per flush (index-record.ts has
 *                      the format); after a clean close, absent or (when
 *                      under closeCompactBytes) left for the next open
 *   journal.compacting.jsonl
 *                      the previous journal while a compaction writes its
 *                      changes into the shards (only during a compaction, or
 *                      after a crash in one)
 * One lowdb file cannot hold a large cache (a 1M-record write blocks
 * ~9 s), hence shards: at 1M records a shard is ~4k records, ~1 MB, and
 * writing it is a join of its rows. Each shard is a lowdb `Low` over a
 * DurableDataFile (index-record.ts has the formats; durable-file.ts the
 * crash-safe writes; index-state.ts the in-memory records, url map and stats;
 * index-files.ts the recovery of damaged files). This module is the
 * persistence: open/load and replay, coalesced flushes, compaction, close.
 *
 * The URL→md5 map is NOT persisted: it is derived from the records' `urls` at
 * open. Building it costs less than parsing a persisted copy would, and a map
 * that is never written can never disagree with the records after a crash.
 * Stats are derived the same way and then maintained incrementally.
 *
 * Writes are coalesced and journaled: put/addUrl/remove change memory
 * synchronously, note the md5 and schedule one flush `flushDelayMs` later. A
 * flush appends the current row (or a removal) of every noted md5 to
 * journal.jsonl as ONE batch — one write call, one fdatasync on a file that
 * already exists — instead of rewriting shards: creating a file costs the
 * kernel far more than appending to one (~0.4-0.9 ms against ~30 µs here),
 * and a download burst used to rewrite hundreds of shards. Flushes are
 * serialized; a change during a flush goes to the next batch.
 *
 * Compaction: when the journal passes compactBytes (default: an eighth of
 * the shards' size, at least 8 MiB, at most 32 MiB; see compactThreshold),
 * and at close() unless the journal is under closeCompactBytes, the shards
 * changed since the last compaction are written the durable way (temp +
 * fsync + rename, one directory fsync), then the journal is dropped. The journal is first RENAMED to
 * journal.compacting.jsonl (the rotation, between two appends), so appends
 * go on into a new journal.jsonl while the shards are written in the
 * background (each shard serialized in one step of a few ms at 1M records,
 * writeConcurrency at a time); the old journal is deleted once every shard
 * it touched is durable (one directory fsync). Resetting the journal by
 * truncating it to 0 instead would not be safe with appends going on: it
 * would also drop the batches appended during the compaction, which the
 * shards written before them may lack; with appends stopped it would stall
 * every flush for the whole compaction (seconds at 1M records).
 *
 * Open reads the shards, then replays journal.compacting.jsonl and
 * journal.jsonl (oldest first; entries in order: the last one per md5 wins,
 * removals remove). Replay is idempotent: every entry is a whole record or a
 * removal, so replaying a journal whose effects the shards already hold
 * changes nothing. After a crash in a compaction (the compacting journal is
 * still there) or with a damaged journal, open writes every shard the
 * journals touched and then retires the journals, oldest first; a damaged
 * one is moved aside (and counts in `recovered`, so needsRebuild asks for an
 * adopting sweep) after its readable batches were applied and written.
 *
 * Crash invariant (with the store): at every instant, shards + journals on
 * disk replay to a state holding every acknowledged change (a flush that
 * resolved), and a shard file is a complete old or new version. Journal
 * appends are only acknowledged after fdatasync; a crash mid-append leaves a
 * batch without its commit line, which replay ignores and the next append
 * cuts away. A journal is deleted only after every shard changed by its
 * entries was durably rewritten after those changes, and journals are
 * deleted oldest first: an older journal left on its own would be replayed
 * over shards holding newer changes, taking records back behind what was
 * acknowledged. A shard written by a compaction may hold changes not yet in
 * any journal: replay may then take a record back to its last acknowledged
 * version, never behind it.
 * The store renames a content file into place BEFORE put(), so the index
 * never durably names a file that was never written; a crash before the
 * flush leaves a file without a record, which the sweep adopts. A record
 * whose file is missing (deleted by hand, or a remove whose unlink ran but
 * whose index flush did not) is repaired by the sweep. Whichever order a
 * caller removes in, a crash in between leaves one of those two cases, never
 * a damaged index (MediaCache unlinks first, on purpose: see cache.ts).
 *
 * One writer: one IndexDb per index dir at a time, in one process. The
 * daemon and MediaCache.open hold `<cacheDir>/.lock` (cache-lock.ts);
 * IndexDb.open takes no lock itself, so direct users must not open one dir
 * twice. A second writer would interleave journal batches and overwrite
 * shards with its own view. A reader of the files sees every acknowledged
 * change only if it replays the journals too.
 *
 * A URL belongs to one record: putting or adding a URL already held by another
 * md5 moves it (the old record drops it). If a crash leaves two shards both
 * claiming a URL, open keeps it on the later fetch (replay then applies the
 * journaled claims on top) and journals the loser.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { DurableAppendFile, DurableDataFile, DurableJSONFile, fsyncDir } from '../util/durable-file.js';
import { keepDamagedCopy, moveAside, readIfPresent, readOrRecover, removeStaleTemps, unlinkIfPresent, type Recovery } from './files.js';
import { MediaCacheError, toMediaCacheError } from '../errors.js';
import { JOURNAL_FORMAT_VERSION, journalBatch, scanJournal, tombstoneLine, type JournalScan } from './journal-format.js';
import { SHARD_COUNT, SHARD_DIGITS, shardName } from './record-codec.js';
import { decodeShard, SHARD_FORMAT, type ShardData } from './shard-format.js';
import { IndexState } from './state.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { renameWithRetry } from '../content/store.js';
import type { CacheStats, StoredRecord } from '../types.js';

/**
 * 2: the journal (an index closed cleanly may keep one). Version 1 had only
 * shards; a version-1 reader would ignore a journal and lose its changes.
 * 3: per-row checksums in shards and journal entries (shard and journal
 * format 2) and the list of shard files in meta.json. A version-2 reader
 * would take every format-2 shard for damage and move it aside.
 * Rows may also carry the media metadata and quota columns (14 to 21); the
 * shipped version-2 format had 13 columns, which version 3 still reads.
 * An index is marked with this version (meta.json rewritten at open) before
 * anything is written in the new formats, so older code refuses it.
 */
export const SCHEMA_VERSION = 3;

/** The journal appended to by flushes, and its name while a compaction retires it. */
export const JOURNAL_FILE = 'journal.jsonl';
export const COMPACTING_JOURNAL_FILE = 'journal.compacting.jsonl';

interface MetaFile {
  schemaVersion: number;
  shardDigits: number;
  createdAt: string;
  /**
   * Names of the shard files this index has written (a shard file, once
   * written, is only ever replaced, never deleted): one listed here but
   * absent at open was deleted by something else, and its records are lost.
   * Absent in indexes written before version 3 (then taken from the files found).
   */
  shards?: string[];
}

/** What open() found damaged or missing, and how much could not be read back (see docs/operations.md). */
export interface IndexDamage {
  /** Copies of damaged files (`<file>.corrupt-<time>`), kept for inspection. */
  files: string[];
  /** Shard files meta.json lists that were not there. */
  missingShards: string[];
  /** Records (shard rows, journal entries) found damaged or missing and not taken. */
  lostRows: number;
}

export interface IndexDbOptions {
  /** Delay between the first unflushed change and its journal append (default 50 ms). */
  flushDelayMs?: number;
  logger?: Logger;
  /** Shard files read in parallel at open (default 4). */
  readConcurrency?: number;
  /** Shard files written in parallel by a compaction (default 4, the size of libuv's pool). */
  writeConcurrency?: number;
  /**
   * Journal size (bytes) that starts a compaction. Default: an eighth of the
   * shards' size, between 8 MiB and 32 MiB (see compactThreshold).
   */
  compactBytes?: number;
  /**
   * close() leaves a journal smaller than this for the next open to replay
   * instead of compacting it (default 0: close always compacts). Replaying
   * a few MiB costs the next open tens of ms; compacting at close rewrites
   * every shard the journal touched (all 256 after a few thousand
   * downloads), which a short script would pay at every exit. MediaCache uses CLOSE_COMPACT_BYTES.
   */
  closeCompactBytes?: number;
  /** Clock for meta.json and moved-aside names (tests). */
  now?: () => Date;
}

/** MediaCache's closeCompactBytes: half the smallest compaction threshold. */
export const CLOSE_COMPACT_BYTES = 4 * 1024 * 1024;

/** Counters for tests, benchmarks and status output. */
export interface IndexDiagnostics {
  /** Shard files written since open (by compactions; meta.json excluded). */
  shardWrites: number;
  /** Flushes that wrote something (a journal batch, meta.json). */
  flushes: number;
  /** Duration of the last such flush. */
  lastFlushMs: number;
  /** Duration of open(). */
  openMs: number;
  /** Batches appended to the journal since open. */
  journalAppends: number;
  /** Acknowledged bytes in the current journal.jsonl. */
  journalBytes: number;
  /** Journal entries replayed at open. */
  replayedEntries: number;
  /** Compactions finished since open (open's own and close()'s included). */
  compactions: number;
  /** Duration of the last compaction (shard writes to journal deletion). */
  lastCompactionMs: number;
}

const EMPTY_SHARD: ShardData = { rows: [] };
/**
 * A flush is one append + fdatasync whatever the index size, not a
 * rewrite of every dirty shard (a cost that grows with the index), so it
 * can run often: a download is durable in the index within a flush delay
 * of landing, for a small share of a core during a download burst.
 */
const DEFAULT_FLUSH_DELAY_MS = 50;
/** Upper bound of the adaptive flush delay (see markDirty). */
const MAX_ADAPTIVE_DELAY_MS = 1000;
const MiB = 1024 * 1024;
const MIN_COMPACT_BYTES = 8 * MiB;
const MAX_COMPACT_BYTES = 32 * MiB;

export class IndexDb {
  readonly dir: string;
  readonly recovered: string[] = [];
  readonly damage: IndexDamage = { files: [], missingShards: [], lostRows: 0 };
  readonly diagnostics: IndexDiagnostics = {
    shardWrites: 0,
    flushes: 0,
    lastFlushMs: 0,
    openMs: 0,
    journalAppends: 0,
    journalBytes: 0,
    replayedEntries: 0,
    compactions: 0,
    lastCompactionMs: 0,
  };
  private createdFresh = false;
  private metaMissing = false;
  /** Shards whose file exists (as far as this index knows): what meta.json lists. */
  private readonly shardsOnDisk = new Set<number>();
  /** Shards found damaged or missing at open: rewritten from memory before open resolves. */
  private readonly repairSet = new Set<number>();
  /** Shards written since the last noteShardsWritten (new ones go into meta.json's list). */
  private readonly written = new Set<number>();

  /** Records, url map and stats in memory (index-state.ts). */
  private readonly state: IndexState;
  private readonly lows: Low<ShardData>[] = [];
  private readonly meta: Low<MetaFile>;
  /** journal.jsonl (replaced when open finds one). */
  private journal: DurableAppendFile;

  private readonly flushDelayMs: number;
  private readonly compactBytes: number | undefined;
  private readonly closeCompactBytes: number;
  private readonly logger: Logger;
  private readonly readConcurrency: number;
  private readonly writeConcurrency: number;
  private readonly now: () => Date;
  private readonly recovery: Recovery;

  /** md5s changed since the last journal append: the next batch. */
  private readonly pending = new Set<string>();
  /** Shards changed since the last rotation (their changes are in journal.jsonl, or pending). */
  private readonly unCompacted = new Set<number>();
  /** Shards the current (or failed) compaction must write before the compacting journal may go. */
  private readonly compactSet = new Set<number>();
  /** journal.compacting.jsonl exists (a compaction runs, or failed and will be retried). */
  private compactingFile = false;
  /** The running compaction's shard writes (background). */
  private compacting: Promise<void> | undefined;
  private compactQueued = false;
  private compactRetryDelayMs = 0;
  private compactNotBefore = 0;
  /** Replaying journals at open: changes are already on disk, only their shards need compacting. */
  private replaying = false;
  /** The index dir or journal vanished: every flush rewrites it from memory until one succeeds. */
  private lostOnDisk = false;
  private metaDirty = false;
  private timer: NodeJS.Timeout | undefined;
  private retryDelayMs = 0;
  /** The running journal operation (or a resolved promise): appends and rotations run one after another. */
  private chain: Promise<void> = Promise.resolve();
  /** A flush queued behind the running one; later flush() calls join it. */
  private queued: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(dir: string, opts: IndexDbOptions) {
    this.dir = dir;
    this.flushDelayMs = opts.flushDelayMs ?? DEFAULT_FLUSH_DELAY_MS;
    this.compactBytes = opts.compactBytes;
    this.closeCompactBytes = opts.closeCompactBytes ?? 0;
    this.logger = opts.logger ?? silentLogger;
    this.readConcurrency = Math.max(1, opts.readConcurrency ?? 4);
    this.writeConcurrency = Math.max(1, opts.writeConcurrency ?? 4);
    this.now = opts.now ?? (() => new Date());
    this.recovery = { logger: this.logger, now: this.now, recovered: this.recovered };
    if (!(this.flushDelayMs >= 0)) throw new MediaCacheError('E_BAD_REQUEST', 'flushDelayMs must be >= 0');
    if (this.compactBytes !== undefined && !(this.compactBytes >= 0)) throw new MediaCacheError('E_BAD_REQUEST', 'compactBytes must be >= 0');
    if (!(this.closeCompactBytes >= 0)) throw new MediaCacheError('E_BAD_REQUEST', 'closeCompactBytes must be >= 0');
    this.state = new IndexState((i, md5) => this.markDirty(i, md5), this.logger);
    for (let i = 0; i < SHARD_COUNT; i++) {
      this.lows.push(new Low<ShardData>(new DurableDataFile(this.shardPath(i), SHARD_FORMAT, { syncDir: false }), EMPTY_SHARD));
    }
    const meta: MetaFile = { schemaVersion: SCHEMA_VERSION, shardDigits: SHARD_DIGITS, createdAt: this.now().toISOString() };
    this.meta = new Low<MetaFile>(new DurableJSONFile(join(dir, 'meta.json')), meta);
    this.journal = new DurableAppendFile(this.journalPath);
  }

  static async open(dir: string, opts: IndexDbOptions = {}): Promise<IndexDb> {
    const db = new IndexDb(dir, opts);
    const t0 = performance.now();
    try {
      await db.load();
    } catch (e) {
      await db.journal.close();
      if (e instanceof MediaCacheError) throw e;
      throw new MediaCacheError('E_UNAVAILABLE', `cannot open index ${dir}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    }
    db.diagnostics.openMs = performance.now() - t0;
    return db;
  }

  /** Index missing or damaged: the caller should run an adopting sweep. */
  get needsRebuild(): boolean {
    return this.recovered.length > 0 || this.damage.missingShards.length > 0 || this.createdFresh || this.metaMissing;
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

  /** Md5s of records flagged `evicting` (few: only changes a crash interrupted, or ones in progress). */
  evictingMd5s(): string[] {
    return this.state.evictingMd5s();
  }

  /** O(1): maintained incrementally. */
  stats(): CacheStats {
    return this.state.stats();
  }

  /** Journal every change made so far now; resolves once they are durable. */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.queued) return this.queued;
    const run = this.serial(() => {
      this.queued = undefined;
      return this.writeDirty();
    });
    this.queued = run;
    return run;
  }

  /**
   * Flush, stop accepting changes, and compact: the shards get every change
   * and the journal goes, so a closed index is its shards alone, unless the
   * journal is under closeCompactBytes (it then stays, durable, and the next
   * open replays it; an unfinished compaction is finished in any case).
   * Idempotent.
   * A failed compaction is logged, not thrown: the journal still holds every
   * change and the next open replays it.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing.catch(() => undefined);
    this.closing = (async () => {
      try {
        try {
          await this.flush();
        } finally {
          // Even when the last flush failed (it rejects to tell the caller): no
          // retry timer may outlive close().
          this.closed = true;
          if (this.timer) clearTimeout(this.timer);
          this.timer = undefined;
        }
        const small = this.journal.bytes < this.closeCompactBytes && !this.compactingFile && this.compactSet.size === 0;
        if (!small) await this.compactAll();
      } finally {
        // Nothing of ours may still be writing once close() settles.
        await this.chain;
        await this.compacting;
        await this.journal.close();
      }
    })();
    return this.closing;
  }

  // ---- internals ----

  private shardPath(i: number): string {
    return join(this.dir, 'records', `${shardName(i)}.jsonl`);
  }

  private get journalPath(): string {
    return join(this.dir, JOURNAL_FILE);
  }

  private get compactingPath(): string {
    return join(this.dir, COMPACTING_JOURNAL_FILE);
  }

  private assertOpen(): void {
    if (this.closed) throw new MediaCacheError('E_UNAVAILABLE', 'index is closed');
  }

  /** Run `fn` after every journal operation queued before it (appends and rotations never overlap). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private markDirty(i: number, md5: string): void {
    this.unCompacted.add(i);
    if (this.replaying) return;
    this.pending.add(md5);
    // Adaptive coalescing: wait at least 4x as long as the last flush took, so
    // a slow disk (fdatasync stuck behind other I/O) is not asked to sync
    // more than ~20% of the time. A journal append is cheap, so this is
    // normally flushDelayMs. flush() is always immediate.
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

  /** One flush (runs in the chain): meta.json when needed, then the pending batch. */
  private async writeDirty(): Promise<void> {
    // Closed: close() compacts whatever is left into the shards (no new journal after that).
    if (this.closed) return;
    const t0 = performance.now();
    let wrote = false;
    let error: unknown;
    if (!this.lostOnDisk) {
      try {
        if (this.metaDirty) {
          this.metaDirty = false;
          try {
            await this.meta.write();
            wrote = true;
          } catch (e) {
            this.metaDirty = true;
            error = e;
          }
        }
        if (this.pending.size > 0) {
          await this.appendPending();
          wrote = true;
        }
      } catch (e) {
        error ??= e;
      }
      // The index directory (or the journal) vanished under a running process (deleted by hand).
      if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') this.lostOnDisk = true;
    }
    if (this.lostOnDisk) {
      // Recreate it and write everything held in memory, so the disk matches
      // memory again instead of failing forever (retried until it works).
      try {
        await this.recreateFromMemory();
        this.lostOnDisk = false;
        error = undefined;
        wrote = true;
      } catch (e) {
        error = e;
      }
    }
    if (wrote) {
      this.diagnostics.flushes++;
      this.diagnostics.lastFlushMs = performance.now() - t0;
    }
    if (error !== undefined) {
      // Keep the data pending and retry with backoff; the caller of flush() learns now.
      this.retryDelayMs = Math.min(30_000, Math.max(1000, this.retryDelayMs * 2));
      this.schedule(this.retryDelayMs, true);
      throw toMediaCacheError(error);
    }
    this.retryDelayMs = 0;
    this.maybeCompact();
  }

  /** Append the pending md5s' rows (or removals) as one batch; they stay pending when it fails. */
  private async appendPending(): Promise<void> {
    const md5s = [...this.pending];
    this.pending.clear();
    // Built now, before any await: the batch is this instant's state.
    const lines = md5s.map((m) => this.state.row(m) ?? tombstoneLine(m));
    try {
      await this.journal.append((atStart) => journalBatch(lines, atStart));
    } catch (e) {
      for (const m of md5s) this.pending.add(m);
      throw e;
    }
    this.diagnostics.journalAppends++;
    this.diagnostics.journalBytes = this.journal.bytes;
  }

  /** Rewrite the whole index from memory (runs in the chain), then journal what is pending. */
  private async recreateFromMemory(): Promise<void> {
    this.logger.warn('index: directory or journal missing while writing; recreating it from memory', { dir: this.dir });
    await this.compacting?.catch(() => undefined);
    await this.journal.detach();
    await mkdir(join(this.dir, 'records'), { recursive: true });
    // No shard file is there now; each is listed again once rewritten.
    this.shardsOnDisk.clear();
    this.written.clear();
    this.meta.data = { ...this.meta.data, shards: [] };
    await this.meta.write();
    this.metaDirty = false;
    this.markEveryShard();
    for (const i of this.unCompacted) this.compactSet.add(i);
    this.unCompacted.clear();
    this.compactingFile = true; // whatever journal is left, the full rewrite covers it
    await this.compactShards();
    await unlinkIfPresent(this.journalPath);
    if (this.pending.size > 0) await this.appendPending();
  }

  /**
   * Journal size that starts a compaction. The two costs it trades: replaying
   * the journal at open (a cost per journaled entry) and compacting,
   * which rewrites every shard the journal touched — past a few thousand
   * entries spread over the md5 space, all of them, i.e. the whole index.
   * An eighth of the shards' size bounds compaction writes to ~8x the
   * journaled bytes; the 8 MiB floor (~25k records) means a small index
   * (2,000 records are 0.6 MiB of shards) only compacts at close (and not
   * even then while its journal is under closeCompactBytes); the 32 MiB
   * cap (reached at ~1M records) bounds the replay at open to a fraction of
   * the time the shards themselves take (bench/index-scale.js measures both).
   */
  private compactThreshold(): number {
    return this.compactBytes ?? Math.min(MAX_COMPACT_BYTES, Math.max(MIN_COMPACT_BYTES, this.state.rowChars / 8));
  }

  /** Start a compaction when the journal is over the threshold (or a failed one is due for a retry). */
  private maybeCompact(): void {
    if (this.compacting || this.compactQueued || this.closed) return;
    const due = (this.journal.bytes > 0 && this.journal.bytes >= this.compactThreshold()) || this.compactingFile;
    if (!due || Date.now() < this.compactNotBefore) return;
    this.compactQueued = true;
    this.serial(async () => {
      this.compactQueued = false;
      if (this.compacting || this.closed) return;
      await this.rotate();
      // Shard writes run in the background: appends go on into the new journal.
      this.compacting = this.compactShards().then(
        () => {
          this.compactRetryDelayMs = 0;
          this.compactNotBefore = 0;
        },
        (e: unknown) => {
          this.compactRetryDelayMs = Math.min(60_000, Math.max(1000, this.compactRetryDelayMs * 2));
          this.compactNotBefore = Date.now() + this.compactRetryDelayMs;
          this.logger.error('index compaction failed; the journal keeps every change, will retry', { error: (e as Error)?.message ?? String(e) });
        },
      );
      void this.compacting.finally(() => {
        this.compacting = undefined;
      });
    }).catch((e: unknown) => {
      this.compactNotBefore = Date.now() + 1000;
      this.logger.error('index journal rotation failed; will retry', { error: (e as Error)?.message ?? String(e) });
    });
  }

  /**
   * Hand the journal's shards to the next compaction (runs in the chain, with
   * no compaction running): journal.jsonl becomes journal.compacting.jsonl and
   * the next append starts a new journal. When a failed compaction's journal
   * is still there it must not be overwritten: the current journal then stays
   * (the retry writes its shards too, so it can go at the next rotation).
   */
  private async rotate(): Promise<void> {
    if (!this.compactingFile && this.journal.present) {
      await this.journal.close();
      await renameWithRetry(this.journalPath, this.compactingPath);
      await this.journal.detach();
      this.diagnostics.journalBytes = 0;
      this.compactingFile = true;
      // Before any shard is written: after a crash, the renamed journal must
      // not come back as journal.jsonl beside a new one.
      await fsyncDir(this.dir);
    }
    for (const i of this.unCompacted) this.compactSet.add(i);
    this.unCompacted.clear();
  }

  /**
   * Write every shard in compactSet durably, then delete the compacting
   * journal (its changes are all in the shards now). Rejects, with the failed
   * shards still in compactSet and the journal kept, when a write fails.
   */
  private async compactShards(): Promise<void> {
    const t0 = performance.now();
    let errors = await this.writeShards();
    if (errors.some((e) => (e as NodeJS.ErrnoException)?.code === 'ENOENT')) {
      // records/ vanished: every shard is gone, not just the ones compacted.
      this.logger.warn('index: records directory missing while compacting; rewriting every shard from memory', { dir: this.dir });
      await mkdir(join(this.dir, 'records'), { recursive: true });
      this.shardsOnDisk.clear();
      this.markEveryShard();
      errors = await this.writeShards();
    }
    if (errors.length > 0) throw toMediaCacheError(errors[0]);
    await this.noteShardsWritten();
    if (this.compactingFile) {
      await unlinkIfPresent(this.compactingPath);
      this.compactingFile = false;
      // Not needed for safety (replaying it again is idempotent), but a
      // deletion that did not stick would make the next open compact again.
      await fsyncDir(this.dir);
    }
    this.diagnostics.compactions++;
    this.diagnostics.lastCompactionMs = performance.now() - t0;
  }

  /** Queue every non-empty shard for writing (the shards on disk are gone). */
  private markEveryShard(): void {
    for (let i = 0; i < SHARD_COUNT; i++) if (this.state.shardSize(i) > 0) this.compactSet.add(i);
  }

  /**
   * Write each shard in compactSet once (temp + fsync + rename, then one
   * directory fsync for all); returns the errors (their shards stay in
   * compactSet). One shard is serialized per event-loop turn at most.
   */
  private async writeShards(): Promise<unknown[]> {
    const todo = [...this.compactSet].sort((a, b) => a - b);
    this.compactSet.clear();
    const errors: unknown[] = [];
    if (todo.length === 0) return errors;
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
          this.written.add(i);
          this.diagnostics.shardWrites++;
        } catch (e) {
          this.compactSet.add(i);
          errors.push(e);
        } finally {
          low.data = EMPTY_SHARD;
        }
      }
    };
    await Promise.all(Array.from({ length: this.writeConcurrency }, worker));
    // Shards skip their own directory fsync: one for the whole batch makes every
    // rename above durable (all shards live in one directory).
    try {
      await fsyncDir(join(this.dir, 'records'));
    } catch (e) {
      for (const i of todo) this.compactSet.add(i);
      errors.push(e);
    }
    return errors;
  }

  /** At close: write every changed shard and retire both journals (errors logged). */
  private async compactAll(): Promise<void> {
    try {
      await this.compacting?.catch(() => undefined);
      // Two rounds at most: a failed compaction's journal first, then the current one.
      for (let round = 0; round < 2; round++) {
        if (!this.journal.present && !this.compactingFile && this.unCompacted.size === 0 && this.compactSet.size === 0) break;
        await this.serial(() => this.rotate());
        await this.compactShards();
      }
    } catch (e) {
      this.logger.warn('index: compaction at close failed; the journal keeps every change and is replayed at the next open', {
        dir: this.dir,
        error: (e as Error)?.message ?? String(e),
      });
    }
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
    const indexFiles = new Set(await removeStaleTemps(this.dir));
    const shardFiles = new Set(await removeStaleTemps(recordsDir));

    const meta = await this.readFile(this.meta.adapter as DurableJSONFile<MetaFile>, isMeta);
    if (meta === undefined) {
      this.metaDirty = true;
      // No meta and no shards: a new index (or one deleted whole); meta
      // missing beside shards: something removed it, so ask for a sweep too.
      const journaled = indexFiles.has(JOURNAL_FILE) || indexFiles.has(COMPACTING_JOURNAL_FILE);
      if ([...shardFiles].some((f) => f.endsWith('.jsonl')) || journaled) this.metaMissing = true;
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
      if (meta.schemaVersion < SCHEMA_VERSION) {
        // Marked before anything is journaled: an older reader must refuse
        // this index rather than read its shards without the journal.
        this.meta.data = { ...meta, schemaVersion: SCHEMA_VERSION };
        await this.meta.write();
      }
    }

    const present = Array.from({ length: SHARD_COUNT }, (_, i) => i).filter((i) => shardFiles.has(`${shardName(i)}.jsonl`));
    for (const i of present) this.shardsOnDisk.add(i);
    const listed = this.meta.data.shards;
    if (meta !== undefined && Array.isArray(listed)) {
      for (const name of listed) {
        const i = parseInt(name, 16);
        if (typeof name !== 'string' || name.length !== SHARD_DIGITS || !(i >= 0 && i < SHARD_COUNT) || this.shardsOnDisk.has(i)) continue;
        // Written once and never deleted by us: its records are gone.
        this.damage.missingShards.push(name);
        this.repairSet.add(i);
        this.logger.error('index: a shard file is missing; its records are lost until an adopting sweep re-indexes their files', {
          file: this.shardPath(i),
        });
      }
    } else {
      this.metaDirty = true; // list the shards found
    }
    // Reads (I/O) run ahead up to readConcurrency shards; the rows are
    // checked, validated and taken one shard per event-loop turn, so the loop
    // is blocked for one shard's parse at most (~tens of ms at 1M records),
    // never for the whole index.
    const reads: (Promise<Buffer | undefined> | undefined)[] = [];
    let started = 0;
    for (let k = 0; k < present.length; k++) {
      for (; started < present.length && started <= k + this.readConcurrency; started++) {
        const read = readIfPresent(this.shardPath(present[started]));
        read.catch(() => undefined); // awaited below, in order; no unhandled-rejection window
        reads.push(read);
      }
      const i = present[k];
      const buf = await reads[k];
      reads[k] = undefined;
      if (buf !== undefined) await this.loadShard(i, buf);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.meta.data = { ...this.meta.data, shards: this.shardNamesOnDisk() };
    await this.replayJournals(indexFiles);
    // Fresh meta, or records changed while loading (URL conflicts): write them now.
    if (this.metaDirty || this.pending.size > 0) await this.flush();
    this.maybeCompact();
  }

  /**
   * Replay the journals on top of the shards just loaded, oldest first. A
   * compaction cut short, or a damaged journal, is finished here: every shard
   * the journals touched is written, then the journals are retired oldest
   * first (a damaged one moved aside, the others deleted).
   */
  private async replayJournals(indexFiles: Set<string>): Promise<void> {
    const found: { file: string; size: number; scan: JournalScan }[] = [];
    this.replaying = true;
    try {
      for (const name of [COMPACTING_JOURNAL_FILE, JOURNAL_FILE]) {
        if (!indexFiles.has(name)) continue;
        const file = join(this.dir, name);
        const buf = await readIfPresent(file);
        if (buf === undefined) continue;
        const scan = await scanJournal(buf, (e) => {
          if (e.rec) this.state.replayPut(e.rec, e.row);
          else this.state.remove(e.rm);
        });
        found.push({ file, size: buf.length, scan });
        this.diagnostics.replayedEntries += scan.entries;
        if (scan.damaged) {
          this.damage.lostRows += scan.lost;
          this.logger.error('index: damaged journal; every entry that passed its check was applied, the rest will be re-indexed from the files on disk', {
            file,
            why: scan.damaged,
            applied: scan.entries,
            lost: scan.lost,
            lostMd5s: scan.lostHints,
          });
        } else if (scan.tornBytes > 0) {
          this.logger.warn('index: ignored the end of a journal append cut short by a crash (never acknowledged)', { file, bytes: scan.tornBytes });
        }
      }
    } finally {
      this.replaying = false;
    }
    const interrupted = found.some((f) => f.file === this.compactingPath);
    // A journal of an older format is folded into the shards, not appended to.
    const retire = interrupted || found.some((f) => f.scan.damaged || f.scan.version !== JOURNAL_FORMAT_VERSION);
    if (!retire && this.repairSet.size === 0) {
      const active = found.find((f) => f.file === this.journalPath);
      if (active) {
        this.journal = new DurableAppendFile(this.journalPath, { size: active.size, validLength: active.scan.validLength });
        this.diagnostics.journalBytes = active.scan.validLength;
      }
      return;
    }
    // Every shard the journals touched, and every damaged or missing one, is
    // written from memory; then the journals can go (a damaged one kept aside).
    for (const i of this.unCompacted) this.compactSet.add(i);
    for (const i of this.repairSet) this.compactSet.add(i);
    this.unCompacted.clear();
    const t0 = performance.now();
    const errors = await this.writeShards();
    if (errors.length > 0) throw errors[0];
    await this.noteShardsWritten();
    for (const f of found) {
      if (f.scan.damaged) {
        await this.moveAside(f.file, `damaged journal: ${f.scan.damaged}`);
        this.damage.files.push(this.recovered[this.recovered.length - 1]);
      } else await unlinkIfPresent(f.file);
    }
    await fsyncDir(this.dir);
    this.diagnostics.compactions++;
    this.diagnostics.lastCompactionMs = performance.now() - t0;
  }

  /**
   * After shard writes: list newly created shard files in meta.json (written
   * after the shards, so meta never lists a file that was never written).
   */
  private async noteShardsWritten(): Promise<void> {
    for (const i of this.written) this.shardsOnDisk.add(i);
    this.written.clear();
    const names = this.shardNamesOnDisk();
    const listed = this.meta.data.shards;
    if (listed && listed.length === names.length && listed.every((n, k) => n === names[k])) return;
    this.meta.data = { ...this.meta.data, shards: names };
    await this.meta.write();
  }

  /**
   * Take the readable rows of one shard file. A damaged file loses only the
   * rows it cannot give back: a copy of it is kept aside, the shard is
   * rewritten from memory before open resolves, and the loss is reported.
   */
  private async loadShard(i: number, buf: Buffer): Promise<void> {
    const read = decodeShard(buf);
    const invalid = this.state.loadShard(i, read.rows);
    if (!read.damaged && invalid === 0) return;
    const lost = read.badLines + read.missingRows + invalid;
    const file = this.shardPath(i);
    const why = read.damaged ?? `${invalid} invalid row(s)`;
    const copy = await keepDamagedCopy(file, buf, why, this.recovery);
    this.damage.files.push(copy);
    this.damage.lostRows += lost;
    this.repairSet.add(i);
    this.logger.error('index: damaged shard; its readable rows were kept, the rest will be re-indexed from the files on disk', {
      file,
      kept: read.rows.length - invalid,
      lost,
      why,
      copy,
    });
  }

  /** Names of the shard files on disk, sorted (meta.json's list). */
  private shardNamesOnDisk(): string[] {
    return [...this.shardsOnDisk].sort((a, b) => a - b).map(shardName);
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
