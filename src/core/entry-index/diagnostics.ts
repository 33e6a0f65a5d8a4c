/**
 * What an IndexDb reports about itself: the damage open() found, and counters
 * kept by its parts (journal, compactor, shard files, flushes). One object per
 * index, shared by reference with the parts that update it.
 */

/** What open() found damaged or missing, and how much could not be read back (see docs/operations.md). */
export interface IndexDamage {
  /** Copies of damaged files (`<file>.corrupt-<time>`), kept for inspection. */
  files: string[];
  /** Shard files meta.json lists that were not there. */
  missingShards: string[];
  /** Records (shard rows, journal entries) found damaged or missing and not taken. */
  lostRows: number;
}

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

export function emptyDiagnostics(): IndexDiagnostics {
  return {
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
}

/** A file or directory that is not there (the index dir, or a file in it, deleted under a running process). */
export function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
