/**
 * The journal's and the compactor's explicit states, driven through their
 * real files: append, rotation, retirement, a journal deleted under us, replay
 * of a rotated journal after a crash, an append cut short before its fsync,
 * compaction thresholds, failure backoff and stop.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Journal, JOURNAL_FILE, COMPACTING_JOURNAL_FILE, type JournalState } from '../../../src/core/entry-index/journal.js';
import { journalBatch, tombstoneLine, type JournalEntry } from '../../../src/core/entry-index/journal-format.js';
import { toRow } from '../../../src/core/entry-index/record-codec.js';
import { emptyDiagnostics } from '../../../src/core/entry-index/diagnostics.js';
import { Compactor } from '../../../src/core/entry-index/compactor.js';
import { ShardFiles } from '../../../src/core/entry-index/shard-files.js';
import { IndexState } from '../../../src/core/entry-index/state.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import type { StoredRecord } from '../../../src/core/types.js';
import { waitFor } from '../../helpers/wait.js';

const md5Of = (s: string): string => createHash('md5').update(s).digest('hex');

function rec(name: string, size = 100): StoredRecord {
  return {
    md5: md5Of(name),
    sha256: createHash('sha256').update(name).digest('hex'),
    fileSize: size,
    mimeType: 'image/png',
    mediaType: 'image',
    extension: '.png',
    urls: [`http://127.0.0.1/${name}`],
    fetchedAt: '2026-01-01T00:00:00.000Z',
    verifiedAt: '2026-01-01T00:00:00.000Z',
  };
}

/** What replaying the journals in `dir` applies, in order (md5 + size, or md5 + 'rm'). */
async function replayed(dir: string): Promise<{ seen: string[]; states: JournalState[]; j: Journal; found: Awaited<ReturnType<Journal['replay']>> }> {
  const j = new Journal(dir, emptyDiagnostics());
  const seen: string[] = [];
  const states: JournalState[] = [];
  const found = await j.replay(new Set([JOURNAL_FILE, COMPACTING_JOURNAL_FILE]), (e: JournalEntry) => {
    states.push(j.state);
    seen.push(e.rec ? `${e.rec.md5}:${e.rec.fileSize}` : `${e.rm}:rm`);
  });
  return { seen, states, j, found };
}

t.test('journal states: append creates the file, rotate hands it over, retire deletes it', async (t) => {
  const dir = t.testdir();
  const d = emptyDiagnostics();
  const j = new Journal(dir, d);
  t.equal(j.state, 'active');
  t.notOk(j.present, 'no file before the first append');
  t.equal(await j.append([toRow(rec('a'))]), 'appended');
  t.ok(j.present);
  t.equal(j.bytes, statSync(join(dir, JOURNAL_FILE)).size, 'bytes are the acknowledged size');
  t.equal(d.journalAppends, 1);

  await j.serial(() => j.rotate());
  t.equal(j.state, 'rotated');
  t.notOk(existsSync(join(dir, JOURNAL_FILE)), 'journal.jsonl renamed away');
  t.ok(existsSync(join(dir, COMPACTING_JOURNAL_FILE)));
  t.equal(j.bytes, 0);
  t.equal(d.journalBytes, 0);

  t.equal(await j.append([toRow(rec('b'))]), 'appended', 'appends go on into a new journal.jsonl');
  const rotatedBytes = readFileSync(join(dir, COMPACTING_JOURNAL_FILE));
  await j.serial(() => j.rotate());
  t.equal(j.state, 'rotated', 'a second rotation while rotated is a no-op');
  t.same(readFileSync(join(dir, COMPACTING_JOURNAL_FILE)), rotatedBytes, 'the rotated journal is never overwritten');
  t.ok(existsSync(join(dir, JOURNAL_FILE)), 'the current journal stays');

  await j.retireRotated();
  t.equal(j.state, 'active');
  t.notOk(existsSync(join(dir, COMPACTING_JOURNAL_FILE)));
  await j.close();
  t.equal(j.state, 'closed');
});

t.test('a journal deleted under us: append reports lost (no error code games), rebuilt starts a new one', async (t) => {
  const dir = t.testdir();
  const j = new Journal(dir, emptyDiagnostics());
  t.equal(await j.append([toRow(rec('a'))]), 'appended');
  rmSync(join(dir, JOURNAL_FILE));
  t.equal(await j.append([toRow(rec('b'))]), 'lost');
  t.equal(j.state, 'lost');
  t.notOk(existsSync(join(dir, JOURNAL_FILE)), 'nothing written while lost');
  t.equal(await j.append([toRow(rec('c'))]), 'lost', 'stays lost until rebuilt');
  await j.serial(() => j.rotate());
  t.equal(j.state, 'lost', 'no rotation while lost');
  await j.rebuilt();
  t.equal(j.state, 'active');
  t.equal(await j.append([toRow(rec('d'))]), 'appended');
  const { seen } = await replayed(dir);
  t.same(seen, [`${md5Of('d')}:100`], 'the new journal holds only what came after the rebuild');
  await j.close();
});

t.test('the index dir deleted before the first append: lost, not a thrown ENOENT', async (t) => {
  const dir = join(t.testdir(), 'idx');
  mkdirSync(dir);
  const j = new Journal(dir, emptyDiagnostics());
  rmSync(dir, { recursive: true });
  t.equal(await j.append([toRow(rec('a'))]), 'lost');
  t.equal(j.state, 'lost');
  // Other failures reject with the state unchanged: the dir is now a file.
  writeFileSync(dir, 'x');
  const k = new Journal(dir, emptyDiagnostics());
  await t.rejects(k.append([toRow(rec('a'))]));
  t.equal(k.state, 'active');
  await j.close();
  await k.close();
});

t.test('replay after a crash in a compaction: the rotated journal first, then the current one', async (t) => {
  const dir = t.testdir();
  const j = new Journal(dir, emptyDiagnostics());
  const x = rec('x');
  const y = rec('y');
  await j.append([toRow({ ...x, fileSize: 1 })]);
  await j.serial(() => j.rotate());
  await j.append([toRow({ ...x, fileSize: 2 }), toRow(y)]);
  await j.append([tombstoneLine(y.md5)]);
  // Crash: the compaction never retired the rotated journal.
  const { seen, states, found } = await replayed(dir);
  t.same(seen, [`${x.md5}:1`, `${x.md5}:2`, `${y.md5}:100`, `${y.md5}:rm`], 'oldest first, entries in order');
  t.ok(states.every((s) => s === 'replaying'), 'state is replaying while entries are applied');
  t.same(
    found.map((f) => f.name),
    [COMPACTING_JOURNAL_FILE, JOURNAL_FILE],
  );
  await j.close();
});

t.test('an append cut short before its fsync is ignored by replay and cut away by the next append', async (t) => {
  const dir = t.testdir();
  const j = new Journal(dir, emptyDiagnostics());
  const a = rec('a');
  await j.append([toRow(a)]);
  const good = statSync(join(dir, JOURNAL_FILE)).size;
  await j.close();
  // A crash mid-append: part of a batch, no commit line.
  const torn = journalBatch([toRow(rec('torn'))], false);
  appendFileSync(join(dir, JOURNAL_FILE), torn.subarray(0, torn.length - 10));

  const r = await replayed(dir);
  t.same(r.seen, [`${a.md5}:100`], 'the torn batch is not applied');
  t.equal(r.found[0].scan.validLength, good);
  t.ok(r.found[0].scan.tornBytes > 0);
  r.j.adopt(r.found[0]);
  t.equal(r.j.bytes, good);
  const b = rec('b');
  t.equal(await r.j.append([toRow(b)]), 'appended');
  await r.j.close();
  const again = await replayed(dir);
  t.same(again.seen, [`${a.md5}:100`, `${b.md5}:100`], 'the next batch follows the last good one');
  t.equal(again.found[0].scan.tornBytes, 0, 'the torn tail is gone');
  await again.j.close();
});

t.test('illegal transitions are refused', async (t) => {
  const dir = t.testdir();
  const j = new Journal(dir, emptyDiagnostics());
  await j.append([toRow(rec('a'))]);
  await j.serial(() => j.rotate());
  await t.rejects(
    j.replay(new Set(), () => undefined),
    /no transition from rotated to replaying/,
  );
  await j.close();
});

/** A compactor over real files in `dir`, with `n` records changed and journaled. */
async function setup(dir: string, n: number, compactBytes: number) {
  const d = emptyDiagnostics();
  const journal = new Journal(dir, d);
  const changed: string[] = [];
  let compactor: Compactor | undefined;
  const state = new IndexState((i, md5) => {
    compactor?.noteChanged(i);
    changed.push(md5);
  }, silentLogger);
  const shards = new ShardFiles(dir, state, d, { now: () => new Date(), writeConcurrency: 2 });
  mkdirSync(shards.recordsDir, { recursive: true });
  compactor = new Compactor({ dir, journal, shards, state, logger: silentLogger, diagnostics: d, compactBytes });
  const recs = Array.from({ length: n }, (_, i) => rec(`c${i}`));
  for (const r of recs) state.put(r);
  await journal.append(changed.map((m) => state.row(m)!));
  return { d, journal, shards, state, compactor, recs };
}

t.test('compactor: idle under the threshold; over it queued, running, then idle with the journal retired', async (t) => {
  const dir = t.testdir();
  const small = await setup(join(dir, 'small'), 5, 1 << 20);
  small.compactor.maybeStart();
  t.equal(small.compactor.state.kind, 'idle', 'under the threshold nothing starts');
  await small.journal.close();

  const { compactor, journal, d, recs, shards } = await setup(join(dir, 'big'), 20, 1);
  compactor.maybeStart();
  t.equal(compactor.state.kind, 'queued', 'queued behind the journal operations');
  compactor.maybeStart();
  await waitFor(() => compactor.state.kind === 'running' || d.compactions === 1, { what: 'compaction started' });
  await waitFor(() => compactor.state.kind === 'idle', { what: 'compaction finished' });
  t.equal(d.compactions, 1, 'one compaction');
  t.equal(journal.state, 'active');
  t.notOk(existsSync(join(dir, 'big', COMPACTING_JOURNAL_FILE)), 'rotated journal deleted');
  t.notOk(existsSync(join(dir, 'big', JOURNAL_FILE)), 'nothing appended since');
  const onDisk = new Set(recs.map((r) => r.md5.slice(0, 2)));
  t.equal(d.shardWrites, onDisk.size, 'each changed shard written once');
  for (const s of onDisk) t.ok(existsSync(shards.shardPath(parseInt(s, 16))));
  await journal.close();
});

t.test('compactor: a failed compaction backs off, keeps the rotated journal; stop() ends background work', async (t) => {
  const dir = t.testdir();
  const { compactor, journal, d, shards } = await setup(dir, 10, 1);
  // Shard writes fail: records/ is a regular file.
  rmSync(shards.recordsDir, { recursive: true });
  writeFileSync(shards.recordsDir, 'not a dir');
  compactor.maybeStart();
  await waitFor(() => compactor.state.kind === 'backoff', { what: 'failed compaction' });
  const s = compactor.state;
  t.ok(s.kind === 'backoff' && s.until > Date.now(), 'retry not before the backoff');
  t.equal(d.compactions, 0);
  t.equal(journal.state, 'rotated', 'the rotated journal is kept');
  t.ok(existsSync(join(dir, COMPACTING_JOURNAL_FILE)));
  compactor.maybeStart();
  t.equal(compactor.state.kind, 'backoff', 'no retry during the backoff');
  t.equal(compactor.closeMayLeaveJournal(Number.MAX_SAFE_INTEGER), false, 'an unfinished compaction is finished at close');

  t.equal(compactor.stop(), undefined, 'nothing running');
  t.equal(compactor.state.kind, 'stopped');
  compactor.maybeStart();
  t.equal(compactor.state.kind, 'stopped', 'nothing starts once stopped');
  // The disk comes back: close's compaction writes the shards and retires the journal.
  rmSync(shards.recordsDir);
  mkdirSync(shards.recordsDir);
  await compactor.compactAtClose(undefined);
  t.equal(d.compactions, 1);
  t.equal(journal.state, 'active');
  t.notOk(existsSync(join(dir, COMPACTING_JOURNAL_FILE)));
  t.notOk(existsSync(join(dir, JOURNAL_FILE)));
  await journal.close();
});
