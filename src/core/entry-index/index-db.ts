/**
 * The cache index: every distinct content (by md5) with its URLs, kept in
 * memory and persisted as shard files plus an append-only journal. This
 * module is the facade that wires the parts together:
 *   state.ts        records, URL map and stats in memory (no I/O)
 *   shard-files.ts  meta.json and the 256 shards records/xx.jsonl
 *   journal.ts      journal.jsonl, journal.compacting.jsonl and their lifecycle
 *   compactor.ts    when and how journaled changes are written into the shards
 *   loader.ts       open: load, replay, recover damage
 *   flush-scheduler.ts  coalescing and retrying flushes
 *
 * Writes are coalesced and journaled: put/addUrl/remove change memory
 * synchronously, note the md5 and schedule one flush `flushDelayMs` later. A
 * flush appends the current row (or a removal) of every noted md5 as ONE
 * journal batch (one write, one fdatasync on a file that already exists)
 * instead of rewriting shards, whose cost grows with the index. A change
 * during a flush goes to the next batch.
 *
 * The URL→md5 map is NOT persisted: it is derived from the records' `urls` at
 * open. Building it costs less than parsing a persisted copy would, and a map
 * that is never written can never disagree with the records after a crash.
 * Stats are derived the same way and then maintained incrementally.
 *
 * Crash invariant: at every instant, shards + journals on disk replay to a
 * state holding every acknowledged change (a flush that resolved), and a
 * shard file is a complete old or new version (journal.ts and compactor.ts
 * say how each step keeps it). The store renames a content file into place
 * BEFORE put(), so the index never durably names a file that was never
 * written; a crash before the flush leaves a file without a record, which the
 * sweep adopts. A record whose file is missing (deleted by hand, or a remove
 * whose unlink ran but whose index flush did not) is repaired by the sweep:
 * whichever order a caller removes in, a crash in between never damages the
 * index. If the index dir or journal vanishes under a running process, the
 * next flush rewrites the whole index from memory (retried until it works).
 *
 * One writer: one IndexDb per index dir at a time, in one process (the
 * daemon and MediaCache.open hold `<cacheDir>/.lock`; IndexDb.open takes no
 * lock itself). A second writer would interleave journal batches and
 * overwrite shards with its own view. A reader of the files sees every
 * acknowledged change only if it replays the journals too.
 *
 * A URL belongs to one record: putting or adding a URL already held by another
 * md5 moves it (the old record drops it). If a crash leaves two shards both
 * claiming a URL, open keeps it on the later fetch (replay then applies the
 * journaled claims on top) and journals the loser.
 */
import { MediaCacheError, toMediaCacheError } from '../errors.js';
import { tombstoneLine } from './journal-format.js';
import { IndexState } from './state.js';
import { ShardFiles } from './shard-files.js';
import { Journal } from './journal.js';
import { Compactor } from './compactor.js';
import { loadIndex } from './loader.js';
import { FlushScheduler } from './flush-scheduler.js';
import { emptyDiagnostics, isMissing, type IndexDamage, type IndexDiagnostics } from './diagnostics.js';
import type { Recovery } from './files.js';
import type { Logger } from '../util/logger.js';
import { resolveIndexDbOptions, type IndexDbOptions } from './options.js';
import type { CacheStats, StoredRecord } from '../types.js';

export { SCHEMA_VERSION } from './shard-files.js';
export { COMPACTING_JOURNAL_FILE, JOURNAL_FILE } from './journal.js';
export type { IndexDamage, IndexDiagnostics } from './diagnostics.js';
export { CLOSE_COMPACT_BYTES, type IndexDbOptions } from './options.js';

export class IndexDb {
  readonly dir: string;
  readonly recovered: string[] = [];
  readonly damage: IndexDamage = { files: [], missingShards: [], lostRows: 0 };
  readonly diagnostics: IndexDiagnostics = emptyDiagnostics();
  private createdFresh = false;
  private metaMissing = false;

  private readonly state: IndexState;
  private readonly shards: ShardFiles;
  private readonly journal: Journal;
  private readonly compactor: Compactor;

  private readonly closeCompactBytes: number;
  private readonly logger: Logger;
  private readonly readConcurrency: number;
  private readonly recovery: Recovery;

  private readonly flusher: FlushScheduler;
  /** md5s changed since the last journal append: the next batch. */
  private readonly pending = new Set<string>();
  /** Set once close() has flushed: no more changes are accepted. */
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(dir: string, options: IndexDbOptions) {
    const opts = resolveIndexDbOptions(options);
    this.dir = dir;
    this.closeCompactBytes = opts.closeCompactBytes;
    this.logger = opts.logger;
    this.readConcurrency = opts.readConcurrency;
    this.recovery = { logger: this.logger, now: opts.now, recovered: this.recovered };
    this.state = new IndexState((i, md5) => this.markDirty(i, md5), this.logger);
    this.shards = new ShardFiles(dir, this.state, this.diagnostics, opts);
    this.journal = new Journal(dir, this.diagnostics);
    this.compactor = new Compactor({
      dir,
      journal: this.journal,
      shards: this.shards,
      state: this.state,
      logger: this.logger,
      diagnostics: this.diagnostics,
      compactBytes: opts.compactBytes,
    });
    this.flusher = new FlushScheduler({
      delayMs: opts.flushDelayMs,
      serial: (fn) => this.journal.serial(fn),
      write: () => this.writeDirty(),
      lastFlushMs: () => this.diagnostics.lastFlushMs,
      logger: this.logger,
    });
  }

  static async open(dir: string, opts: IndexDbOptions = {}): Promise<IndexDb> {
    const db = new IndexDb(dir, opts);
    const t0 = performance.now();
    try {
      const { createdFresh, metaMissing } = await loadIndex({
        dir,
        state: db.state,
        shards: db.shards,
        journal: db.journal,
        compactor: db.compactor,
        damage: db.damage,
        recovery: db.recovery,
        readConcurrency: db.readConcurrency,
      });
      db.createdFresh = createdFresh;
      db.metaMissing = metaMissing;
      // Fresh meta, or records changed while loading (URL conflicts): write them now.
      if (db.shards.metaNeedsWrite || db.pending.size > 0) await db.flush();
      db.compactor.maybeStart();
    } catch (e) {
      await db.journal.close();
      if (e instanceof MediaCacheError) throw e;
      throw new MediaCacheError('E_UNAVAILABLE', `cannot open index ${dir}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    }
    db.diagnostics.openMs = performance.now() - t0;
    return db;
  }

  /** No index was there (a new cache, or its index folder deleted whole): an empty one was created. */
  get createdNew(): boolean {
    return this.createdFresh && this.recovered.length === 0 && !this.metaMissing;
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
    return this.flusher.flush();
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
      let running: Promise<void> | undefined;
      try {
        try {
          await this.flush();
        } finally {
          // Even when the last flush failed (it rejects to tell the caller): no
          // retry timer may outlive close().
          this.closed = true;
          this.flusher.stop();
          running = this.compactor.stop();
        }
        if (!this.compactor.closeMayLeaveJournal(this.closeCompactBytes)) await this.compactor.compactAtClose(running);
      } finally {
        // Nothing of ours may still be writing once close() settles.
        await this.journal.idle();
        await running;
        await this.journal.close();
      }
    })();
    return this.closing;
  }

  // ---- internals ----

  private assertOpen(): void {
    if (this.closed) throw new MediaCacheError('E_UNAVAILABLE', 'index is closed');
  }

  private markDirty(i: number, md5: string): void {
    this.compactor.noteChanged(i);
    // Replayed changes are already journaled.
    if (this.journal.state === 'replaying') return;
    this.pending.add(md5);
    this.flusher.changed();
  }

  /** One flush (runs in the journal's serial queue): meta.json when needed, then the pending batch. */
  private async writeDirty(): Promise<void> {
    // Closed: close() compacts whatever is left into the shards (no new journal after that).
    if (this.closed) return;
    const t0 = performance.now();
    let wrote = false;
    let error: unknown;
    if (this.journal.state !== 'lost') {
      try {
        wrote = await this.shards.writeMetaIfDirty();
      } catch (e) {
        error = e;
        // The index directory vanished under a running process (deleted by hand).
        if (isMissing(e)) this.journal.markLost();
      }
      try {
        if ((await this.appendPending()) === 'appended') wrote = true;
      } catch (e) {
        error ??= e;
      }
    }
    if (this.journal.state === 'lost') {
      // Recreate it and write everything held in memory, so the disk matches
      // memory again instead of failing forever (retried until it works).
      try {
        this.logger.warn('index: directory or journal missing while writing; recreating it from memory', { dir: this.dir });
        await this.compactor.rewriteAll();
        if ((await this.appendPending()) === 'lost') throw new MediaCacheError('E_UNAVAILABLE', `index ${this.dir}: journal vanished again while being recreated`);
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
      this.flusher.failed();
      throw toMediaCacheError(error);
    }
    this.flusher.succeeded();
    this.compactor.maybeStart();
  }

  /** Append the pending md5s' rows (or removals) as one batch; they stay pending unless it was appended. */
  private async appendPending(): Promise<'appended' | 'lost' | 'nothing'> {
    if (this.pending.size === 0) return 'nothing';
    const md5s = [...this.pending];
    this.pending.clear();
    // Built now, before any await: the batch is this instant's state.
    const lines = md5s.map((m) => this.state.row(m) ?? tombstoneLine(m));
    let outcome: 'appended' | 'lost';
    try {
      outcome = await this.journal.append(lines);
    } catch (e) {
      for (const m of md5s) this.pending.add(m);
      throw e;
    }
    if (outcome === 'lost') for (const m of md5s) this.pending.add(m);
    return outcome;
  }
}
