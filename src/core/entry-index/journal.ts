/**
 * The index journal: the changes not yet written into the shards, as
 * appended batches (journal-format.ts has the format), and the lifecycle of
 * its two files in the index dir:
 *   journal.jsonl             appended to by flushes
 *   journal.compacting.jsonl  the previous journal, renamed away while a
 *                             compaction writes its changes into the shards
 *
 * State (one field, every transition through `to()`):
 *   active     journal.jsonl is the only journal (absent until the first
 *              append creates it)
 *   rotated    journal.compacting.jsonl is there too: its shards are being
 *              written, or a failed compaction will retry them
 *   replaying  open() is applying the journals found on disk to memory; the
 *              changes this makes are already journaled, so none is appended
 *   lost       the index dir or journal.jsonl vanished under us: nothing is
 *              appended until the index was rewritten from memory (rebuilt())
 *   closed     no more operations
 *   active → replaying → active (open); active ⇄ rotated (rotate, retireRotated);
 *   active | rotated → lost → active (markLost, rebuilt); any → closed.
 *
 * Crash safety:
 * - An append is one positional write of a whole batch, then fdatasync; it is
 *   acknowledged (append() resolves) only after that. A crash before the sync
 *   leaves a batch without its commit line, which replay ignores and the next
 *   append cuts away (DurableAppendFile), so new batches never follow garbage.
 * - Appends, rotations and rebuilds run one after another (serial()): a
 *   rotation never splits a batch.
 * - rotate() renames journal.jsonl to journal.compacting.jsonl and fsyncs the
 *   directory before any shard of that compaction is written: after a crash
 *   the renamed journal never comes back as journal.jsonl beside a new one.
 *   A failed compaction's journal is never overwritten: while rotated, the
 *   current journal stays (the retry writes its shards too).
 * - A journal is deleted only after every shard its entries changed was
 *   durably rewritten, and oldest first: an older journal left on its own
 *   would be replayed over shards holding newer changes.
 * - Open replays journal.compacting.jsonl, then journal.jsonl: entries in
 *   order, the last one per md5 wins, removals remove. Every entry is a whole
 *   record or a removal, so replaying changes the shards already hold is a
 *   no-op, whatever step a crash interrupted.
 */
import { join } from 'node:path';
import { DurableAppendFile, fsyncDir } from '../util/durable-file.js';
import { renameWithRetry } from '../content/store.js';
import { readIfPresent, unlinkIfPresent } from './files.js';
import { journalBatch, scanJournal, type JournalEntry, type JournalScan } from './journal-format.js';
import { isMissing, type IndexDiagnostics } from './diagnostics.js';

/** The journal appended to by flushes, and its name while a compaction retires it. */
export const JOURNAL_FILE = 'journal.jsonl';
export const COMPACTING_JOURNAL_FILE = 'journal.compacting.jsonl';

export type JournalState = 'active' | 'rotated' | 'replaying' | 'lost' | 'closed';

const TRANSITIONS: Record<JournalState, readonly JournalState[]> = {
  active: ['replaying', 'rotated', 'lost', 'closed'],
  replaying: ['active', 'closed'],
  rotated: ['active', 'lost', 'closed'],
  lost: ['active', 'closed'],
  closed: ['closed'],
};

/** One journal file read at open. */
export interface ReplayedJournal {
  name: typeof JOURNAL_FILE | typeof COMPACTING_JOURNAL_FILE;
  file: string;
  size: number;
  scan: JournalScan;
}

export class Journal {
  readonly path: string;
  readonly compactingPath: string;
  private current: JournalState = 'active';
  private file: DurableAppendFile;
  /** The running operation (or a resolved promise): appends, rotations and rebuilds run one after another. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly diagnostics: IndexDiagnostics,
  ) {
    this.path = join(dir, JOURNAL_FILE);
    this.compactingPath = join(dir, COMPACTING_JOURNAL_FILE);
    this.file = new DurableAppendFile(this.path);
  }

  get state(): JournalState {
    return this.current;
  }

  /** Acknowledged bytes in journal.jsonl. */
  get bytes(): number {
    return this.file.bytes;
  }

  /** Whether journal.jsonl is there (created, or adopted at open). */
  get present(): boolean {
    return this.file.present;
  }

  /** Run `fn` after every journal operation queued before it. */
  serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Resolves once every operation queued so far has settled. */
  idle(): Promise<void> {
    return this.chain;
  }

  /**
   * Read the journals found at open (`names`: the files in the index dir),
   * oldest first, handing every intact entry to `apply`.
   */
  async replay(names: Set<string>, apply: (e: JournalEntry) => void): Promise<ReplayedJournal[]> {
    const found: ReplayedJournal[] = [];
    this.to('replaying');
    try {
      for (const name of [COMPACTING_JOURNAL_FILE, JOURNAL_FILE] as const) {
        if (!names.has(name)) continue;
        const file = join(this.dir, name);
        const buf = await readIfPresent(file);
        if (buf === undefined) continue;
        const scan = await scanJournal(buf, apply);
        found.push({ name, file, size: buf.length, scan });
        this.diagnostics.replayedEntries += scan.entries;
      }
    } finally {
      this.to('active');
    }
    return found;
  }

  /** Append to the journal found at open (its torn tail, if any, is cut by the first append). */
  adopt(found: ReplayedJournal): void {
    this.file = new DurableAppendFile(this.path, { size: found.size, validLength: found.scan.validLength });
    this.diagnostics.journalBytes = found.scan.validLength;
  }

  /**
   * After open wrote every shard the replayed journals touched: retire them,
   * oldest first (`keepAside` for a damaged one, delete the others).
   */
  async retireReplayed(found: ReplayedJournal[], keepAside: (f: ReplayedJournal) => Promise<void>): Promise<void> {
    for (const f of found) {
      if (f.scan.damaged) await keepAside(f);
      else await unlinkIfPresent(f.file);
    }
    await fsyncDir(this.dir);
  }

  /**
   * Append `lines` as one batch; durable once it resolves 'appended'.
   * 'lost': the journal or the index dir is gone (state lost, nothing
   * written). Other failures reject, with the state unchanged.
   */
  async append(lines: string[]): Promise<'appended' | 'lost'> {
    if (this.current === 'lost') return 'lost';
    let n: number | 'deleted';
    try {
      n = await this.file.appendUnlessDeleted((atStart) => journalBatch(lines, atStart));
    } catch (e) {
      // Creating journal.jsonl (or reopening it) found no file or directory.
      if (!isMissing(e)) throw e;
      n = 'deleted';
    }
    if (n === 'deleted') {
      this.markLost();
      return 'lost';
    }
    this.diagnostics.journalAppends++;
    this.diagnostics.journalBytes = this.file.bytes;
    return 'appended';
  }

  /**
   * Hand journal.jsonl to a compaction (call inside serial()): it becomes
   * journal.compacting.jsonl and the next append starts a new journal. No-op
   * when already rotated (a failed compaction's journal must not be
   * overwritten), when lost, or with no journal.
   */
  async rotate(): Promise<void> {
    if (this.current !== 'active' || !this.file.present) return;
    await this.file.close();
    await renameWithRetry(this.path, this.compactingPath);
    await this.file.detach();
    this.diagnostics.journalBytes = 0;
    this.to('rotated');
    // Before any shard is written: after a crash, the renamed journal must
    // not come back as journal.jsonl beside a new one.
    await fsyncDir(this.dir);
  }

  /** A compaction made every change of the rotated journal durable in the shards: delete it. */
  async retireRotated(): Promise<void> {
    if (this.current !== 'rotated' && this.current !== 'lost') return;
    await unlinkIfPresent(this.compactingPath);
    if (this.current === 'rotated') this.to('active');
    // Not needed for safety (replaying it again is idempotent), but a
    // deletion that did not stick would make the next open compact again.
    await fsyncDir(this.dir);
  }

  /** Something outside the journal found the index dir gone. */
  markLost(): void {
    if (this.current === 'active' || this.current === 'rotated') this.to('lost');
  }

  /** The whole index was rewritten from memory: drop whatever journal is left and start a new one. */
  async rebuilt(): Promise<void> {
    await this.file.detach();
    await unlinkIfPresent(this.compactingPath);
    await unlinkIfPresent(this.path);
    this.diagnostics.journalBytes = 0;
    await fsyncDir(this.dir);
    if (this.current === 'lost' || this.current === 'rotated') this.to('active');
  }

  async close(): Promise<void> {
    this.to('closed');
    await this.file.close();
  }

  private to(next: JournalState): void {
    if (!TRANSITIONS[this.current].includes(next)) throw new Error(`index journal: no transition from ${this.current} to ${next}`);
    this.current = next;
  }
}
