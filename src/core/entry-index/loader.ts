/**
 * Open-time loading of an index dir into memory: meta.json, the shard files,
 * then the journals replayed on top (journal.ts), with damage found on the
 * way reported and repaired before open resolves.
 *
 * Recovery at open:
 * - Temp files a killed writer left are deleted (the file they were to
 *   replace is still a complete old version).
 * - meta.json missing or damaged (moved aside) beside shards or journals:
 *   the index is read from what is there and an adopting sweep is asked for
 *   (`metaMissing`); nothing there at all is a new index (`createdFresh`).
 * - A shard meta.json lists but that is missing lost its records: reported in
 *   damage.missingShards, and rewritten from memory (empty or not).
 * - A damaged shard gives back the rows that pass their checks; a copy of
 *   the file is kept aside, the shard rewritten from memory, the loss reported.
 * - Journals are replayed oldest first. After a crash in a compaction (the
 *   rotated journal is still there), with a damaged journal, one of an older
 *   format, or with shards to repair, every shard the journals touched is
 *   written and then the journals are retired oldest first (a damaged one
 *   moved aside after its readable batches were applied and written). Else
 *   the journal stays and new batches are appended to it.
 * Each step leaves the files replayable: shards are written before any
 * journal goes, so a crash during open is recovered the same way by the next.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { keepDamagedCopy, moveAside, readIfPresent, removeStaleTemps, type Recovery } from './files.js';
import { JOURNAL_FORMAT_VERSION } from './journal-format.js';
import { COMPACTING_JOURNAL_FILE, JOURNAL_FILE, type Journal } from './journal.js';
import { SHARD_COUNT, SHARD_DIGITS, shardName } from './record-codec.js';
import { decodeShard } from './shard-format.js';
import { isMissing, type IndexDamage } from './diagnostics.js';
import type { Compactor } from './compactor.js';
import type { ShardFiles } from './shard-files.js';
import type { IndexState } from './state.js';

export interface LoadContext {
  dir: string;
  state: IndexState;
  shards: ShardFiles;
  journal: Journal;
  compactor: Compactor;
  damage: IndexDamage;
  /** Logger, clock, and the list of files moved aside (IndexDb.recovered). */
  recovery: Recovery;
  /** Shard files read ahead of the one being parsed. */
  readConcurrency: number;
}

export interface LoadResult {
  /** No index was there: an empty one was created. */
  createdFresh: boolean;
  /** meta.json was missing beside shards or journals. */
  metaMissing: boolean;
}

export async function loadIndex(c: LoadContext): Promise<LoadResult> {
  const { dir, shards, damage } = c;
  const logger = c.recovery.logger;
  let existed = true;
  try {
    await readdir(dir);
  } catch (e) {
    if (!isMissing(e)) throw e;
    existed = false;
  }
  await mkdir(shards.recordsDir, { recursive: true });
  const indexFiles = new Set(await removeStaleTemps(dir));
  const shardFiles = new Set(await removeStaleTemps(shards.recordsDir));

  let createdFresh = false;
  let metaMissing = false;
  const meta = await shards.readMeta(c.recovery);
  if (meta === undefined) {
    shards.markMetaDirty();
    // No meta and no shards: a new index (or one deleted whole); meta
    // missing beside shards: something removed it, so ask for a sweep too.
    const journaled = indexFiles.has(JOURNAL_FILE) || indexFiles.has(COMPACTING_JOURNAL_FILE);
    if ([...shardFiles].some((f) => f.endsWith('.jsonl')) || journaled) metaMissing = true;
    else createdFresh = true;
    if (!existed) createdFresh = true;
  } else {
    await shards.adoptMeta(meta);
  }

  const present = Array.from({ length: SHARD_COUNT }, (_, i) => i).filter((i) => shardFiles.has(`${shardName(i)}.jsonl`));
  const presentSet = new Set(present);
  /** Shards found damaged or missing: rewritten from memory before open resolves. */
  const repair = new Set<number>();
  const listed = shards.listed;
  if (meta !== undefined && Array.isArray(listed)) {
    for (const name of listed) {
      const i = parseInt(name, 16);
      if (typeof name !== 'string' || name.length !== SHARD_DIGITS || !(i >= 0 && i < SHARD_COUNT) || presentSet.has(i)) continue;
      // Written once and never deleted by us: its records are gone.
      damage.missingShards.push(name);
      repair.add(i);
      logger.error('index: a shard file is missing; its records are lost until an adopting sweep re-indexes their files', {
        file: shards.shardPath(i),
      });
    }
  } else {
    shards.markMetaDirty(); // list the shards found
  }
  // Reads (I/O) run ahead up to readConcurrency shards; the rows are
  // checked, validated and taken one shard per event-loop turn, so the loop
  // is blocked for one shard's parse at most, never for the whole index.
  const reads: (Promise<Buffer | undefined> | undefined)[] = [];
  let started = 0;
  for (let k = 0; k < present.length; k++) {
    for (; started < present.length && started <= k + c.readConcurrency; started++) {
      const read = readIfPresent(shards.shardPath(present[started]));
      read.catch(() => undefined); // awaited below, in order; no unhandled-rejection window
      reads.push(read);
    }
    const i = present[k];
    const buf = await reads[k];
    reads[k] = undefined;
    if (buf !== undefined) await loadShard(c, i, buf, repair);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  shards.notePresent(present);
  await replayJournals(c, indexFiles, repair);
  return { createdFresh, metaMissing };
}

/**
 * Take the readable rows of one shard file. A damaged file loses only the
 * rows it cannot give back: a copy of it is kept aside, the shard is
 * rewritten from memory before open resolves, and the loss is reported.
 */
async function loadShard(c: LoadContext, i: number, buf: Buffer, repair: Set<number>): Promise<void> {
  const read = decodeShard(buf);
  const invalid = c.state.loadShard(i, read.rows);
  if (!read.damaged && invalid === 0) return;
  const lost = read.badLines + read.missingRows + invalid;
  const file = c.shards.shardPath(i);
  const why = read.damaged ?? `${invalid} invalid row(s)`;
  const copy = await keepDamagedCopy(file, buf, why, c.recovery);
  c.damage.files.push(copy);
  c.damage.lostRows += lost;
  repair.add(i);
  c.recovery.logger.error('index: damaged shard; its readable rows were kept, the rest will be re-indexed from the files on disk', {
    file,
    kept: read.rows.length - invalid,
    lost,
    why,
    copy,
  });
}

/**
 * Replay the journals on top of the shards just loaded, oldest first. A
 * compaction cut short, a damaged or older-format journal, or shards to
 * repair are finished here: every shard concerned is written, then the
 * journals are retired oldest first (a damaged one moved aside).
 */
async function replayJournals(c: LoadContext, indexFiles: Set<string>, repair: Set<number>): Promise<void> {
  const { journal, state, damage, recovery } = c;
  const found = await journal.replay(indexFiles, (e) => {
    if (e.rec) state.replayPut(e.rec, e.row);
    else state.remove(e.rm);
  });
  for (const { file, scan } of found) {
    if (scan.damaged) {
      damage.lostRows += scan.lost;
      recovery.logger.error('index: damaged journal; every entry that passed its check was applied, the rest will be re-indexed from the files on disk', {
        file,
        why: scan.damaged,
        applied: scan.entries,
        lost: scan.lost,
        lostMd5s: scan.lostHints,
      });
    } else if (scan.tornBytes > 0) {
      recovery.logger.warn('index: ignored the end of a journal append cut short by a crash (never acknowledged)', { file, bytes: scan.tornBytes });
    }
  }
  const interrupted = found.some((f) => f.name === COMPACTING_JOURNAL_FILE);
  // A journal of an older format is folded into the shards, not appended to.
  const retire = interrupted || found.some((f) => f.scan.damaged || f.scan.version !== JOURNAL_FORMAT_VERSION);
  if (!retire && repair.size === 0) {
    const active = found.find((f) => f.name === JOURNAL_FILE);
    if (active) journal.adopt(active);
    return;
  }
  await c.compactor.compactAtOpen(repair, () =>
    journal.retireReplayed(found, async (f) => {
      await moveAside(f.file, `damaged journal: ${f.scan.damaged}`, recovery);
      damage.files.push(recovery.recovered[recovery.recovered.length - 1]);
    }),
  );
}
