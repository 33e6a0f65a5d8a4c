/**
 * Compaction: writing the journaled changes into the shard files so the
 * journal can go. When: the journal passes the threshold (compactThreshold),
 * a failed compaction is due for a retry, or the index closes. How: the
 * journal is rotated (journal.ts: renamed to journal.compacting.jsonl, between
 * two appends), then every shard changed since the previous rotation is
 * written the durable way (shard-files.ts) in the background while appends go
 * on into a new journal.jsonl; the rotated journal is deleted once every
 * shard it touched is durable. Resetting the journal by truncating it instead
 * would not be safe with appends going on (it would also drop the batches
 * appended during the compaction, which the shards written before them may
 * lack), and stopping appends would stall every flush for the whole
 * compaction.
 *
 * State (one field):
 *   idle     nothing running; a compaction starts when one is due
 *   queued   a rotation waits its turn behind the journal's running operation
 *   running  shards are being written in the background (`done` settles when
 *            the attempt ends; it never rejects)
 *   backoff  the last rotation or compaction failed: the next one waits until
 *            `until` (doubling from 1 s up to 60 s while compactions keep failing)
 *   stopped  the index is closing: nothing starts in the background any more;
 *            close() runs the last compaction itself (compactAtClose)
 *
 * Crash safety: a shard the compaction wrote may hold changes not yet in any
 * journal (made after the rotation); replay may then take a record back to
 * its last acknowledged version, never behind it. A failed shard write keeps
 * its shard pending and the rotated journal on disk, so a crash or a retry
 * finds every change still journaled. Open finishes a compaction a crash cut
 * short (compactAtOpen) before it resolves.
 */
import { SHARD_COUNT } from './record-codec.js';
import { toMediaCacheError } from '../errors.js';
import { isMissing, type IndexDiagnostics } from './diagnostics.js';
import type { Journal } from './journal.js';
import type { ShardFiles } from './shard-files.js';
import type { IndexState } from './state.js';
import type { Logger } from '../util/logger.js';

export type CompactorState =
  | { kind: 'idle' }
  | { kind: 'queued' }
  | { kind: 'running'; done: Promise<void> }
  | { kind: 'backoff'; until: number }
  | { kind: 'stopped' };

export interface CompactorOptions {
  dir: string;
  journal: Journal;
  shards: ShardFiles;
  state: IndexState;
  logger: Logger;
  diagnostics: IndexDiagnostics;
  /** Fixed threshold in bytes (tests); default compactThreshold(). */
  compactBytes?: number;
}

const MiB = 1024 * 1024;
const MIN_COMPACT_BYTES = 8 * MiB;
const MAX_COMPACT_BYTES = 32 * MiB;

/**
 * Journal size that starts a compaction. The two costs it trades: replaying
 * the journal at open (a cost per journaled entry) and compacting, which
 * rewrites every shard the journal touched — past a few thousand entries
 * spread over the md5 space, all of them, i.e. the whole index. An eighth of
 * the shards' size bounds compaction writes to ~8x the journaled bytes; the
 * 8 MiB floor (~25k records) means a small index only compacts at close (and
 * not even then while its journal is under closeCompactBytes); the 32 MiB cap
 * bounds the replay at open to a fraction of the time the shards themselves
 * take (bench/index-scale.js measures both).
 */
export function compactThreshold(shardChars: number): number {
  return Math.min(MAX_COMPACT_BYTES, Math.max(MIN_COMPACT_BYTES, shardChars / 8));
}

export class Compactor {
  private current: CompactorState = { kind: 'idle' };
  private retryDelayMs = 0;
  /** Shards changed since the last rotation (their changes are in journal.jsonl, or about to be). */
  private readonly unCompacted = new Set<number>();
  /** Shards the current (or failed) compaction must write before the rotated journal may go. */
  private readonly toWrite = new Set<number>();

  constructor(private readonly o: CompactorOptions) {}

  get state(): CompactorState {
    return this.current;
  }

  /** A record of shard `i` changed (in memory). */
  noteChanged(i: number): void {
    this.unCompacted.add(i);
  }

  /** Start a compaction in the background when the journal is over the threshold, or a failed one is due for a retry. */
  maybeStart(): void {
    const s = this.current;
    if (s.kind === 'queued' || s.kind === 'running' || s.kind === 'stopped') return;
    const j = this.o.journal;
    const threshold = this.o.compactBytes ?? compactThreshold(this.o.state.rowChars);
    const due = (j.bytes > 0 && j.bytes >= threshold) || j.state === 'rotated';
    if (!due || (s.kind === 'backoff' && Date.now() < s.until)) return;
    this.current = { kind: 'queued' };
    j.serial(async () => {
      if (this.current.kind !== 'queued') return;
      await j.rotate();
      this.takeRotation();
      // Stopped during the rotation: close() compacts what it handed over.
      if (this.current.kind !== 'queued') return;
      const done: Promise<void> = this.compact(() => j.retireRotated()).then(
        () => {
          this.retryDelayMs = 0;
          this.settle(done, { kind: 'idle' });
        },
        (e: unknown) => {
          this.retryDelayMs = Math.min(60_000, Math.max(1000, this.retryDelayMs * 2));
          this.settle(done, { kind: 'backoff', until: Date.now() + this.retryDelayMs });
          this.o.logger.error('index compaction failed; the journal keeps every change, will retry', { error: (e as Error)?.message ?? String(e) });
        },
      );
      this.current = { kind: 'running', done };
    }).catch((e: unknown) => {
      if (this.current.kind === 'queued') this.current = { kind: 'backoff', until: Date.now() + 1000 };
      this.o.logger.error('index journal rotation failed; will retry', { error: (e as Error)?.message ?? String(e) });
    });
  }

  /** No compaction starts in the background from now on; returns the running one, if any. */
  stop(): Promise<void> | undefined {
    const running = this.current.kind === 'running' ? this.current.done : undefined;
    this.current = { kind: 'stopped' };
    return running;
  }

  /** Whether close() may leave the journal for the next open: under `closeCompactBytes` and no compaction unfinished. */
  closeMayLeaveJournal(closeCompactBytes: number): boolean {
    return this.o.journal.bytes < closeCompactBytes && this.o.journal.state !== 'rotated' && this.toWrite.size === 0;
  }

  /** At close (after stop()): write every changed shard and retire both journals. Errors are logged, not thrown. */
  async compactAtClose(running: Promise<void> | undefined): Promise<void> {
    const j = this.o.journal;
    try {
      await running;
      // Two rounds at most: a failed compaction's journal first, then the current one.
      for (let round = 0; round < 2; round++) {
        if (!j.present && j.state !== 'rotated' && this.unCompacted.size === 0 && this.toWrite.size === 0) break;
        await j.serial(async () => {
          await j.rotate();
          this.takeRotation();
        });
        await this.compact(() => j.retireRotated());
      }
    } catch (e) {
      this.o.logger.warn('index: compaction at close failed; the journal keeps every change and is replayed at the next open', {
        dir: this.o.dir,
        error: (e as Error)?.message ?? String(e),
      });
    }
  }

  /**
   * At open, after replay: write every shard the journals touched plus
   * `repair` (shards found damaged or missing), then `retire` the journals.
   * Rejects with the first write error (open then fails).
   */
  async compactAtOpen(repair: Iterable<number>, retire: () => Promise<void>): Promise<void> {
    this.takeRotation();
    for (const i of repair) this.toWrite.add(i);
    const t0 = performance.now();
    const errors = await this.writePending();
    if (errors.length > 0) throw errors[0];
    await this.o.shards.noteWritten();
    await retire();
    this.finished(t0);
  }

  /**
   * The index dir vanished under us (call inside the journal's serial()):
   * recreate it and write every shard from memory, then start a new journal.
   */
  async rewriteAll(): Promise<void> {
    if (this.current.kind === 'running') await this.current.done;
    await this.o.shards.recreate();
    this.markEveryShard();
    this.takeRotation();
    await this.compact(() => this.o.journal.rebuilt());
  }

  /**
   * Write every pending shard durably, then `retire` the journal(s) whose
   * changes they now hold. Rejects, with the failed shards still pending and
   * the journals kept, when a write fails.
   */
  private async compact(retire: () => Promise<void>): Promise<void> {
    const t0 = performance.now();
    let errors = await this.writePending();
    if (errors.some(isMissing)) {
      // records/ vanished: every shard is gone, not just the ones compacted.
      this.o.logger.warn('index: records directory missing while compacting; rewriting every shard from memory', { dir: this.o.dir });
      await this.o.shards.recreateRecordsDir();
      this.markEveryShard();
      errors = await this.writePending();
    }
    if (errors.length > 0) throw toMediaCacheError(errors[0]);
    await this.o.shards.noteWritten();
    await retire();
    this.finished(t0);
  }

  private async writePending(): Promise<unknown[]> {
    const todo = [...this.toWrite].sort((a, b) => a - b);
    this.toWrite.clear();
    const { failed, errors } = await this.o.shards.write(todo);
    for (const i of failed) this.toWrite.add(i);
    return errors;
  }

  /** The shards changed since the last rotation now belong to the compaction. */
  private takeRotation(): void {
    for (const i of this.unCompacted) this.toWrite.add(i);
    this.unCompacted.clear();
  }

  /** Queue every non-empty shard for writing (the shards on disk are gone). */
  private markEveryShard(): void {
    for (let i = 0; i < SHARD_COUNT; i++) if (this.o.state.shardSize(i) > 0) this.toWrite.add(i);
  }

  private settle(done: Promise<void>, next: CompactorState): void {
    if (this.current.kind === 'running' && this.current.done === done) this.current = next;
  }

  private finished(t0: number): void {
    this.o.diagnostics.compactions++;
    this.o.diagnostics.lastCompactionMs = performance.now() - t0;
  }
}
