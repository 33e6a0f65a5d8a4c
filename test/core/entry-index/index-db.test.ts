import t from 'tap';
import { createHash } from 'node:crypto';
import { appendFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { IndexDb, SCHEMA_VERSION } from '../../../src/core/entry-index/index-db.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import type { StoredRecord } from '../../../src/core/types.js';
import { waitFor } from '../../helpers/wait.js';

const md5Of = (s: string): string => createHash('md5').update(s).digest('hex');
const sha256Of = (s: string): string => createHash('sha256').update(s).digest('hex');

function rec(name: string, over: Partial<StoredRecord> = {}): StoredRecord {
  return {
    md5: md5Of(name),
    sha256: sha256Of(name),
    fileSize: 100,
    mimeType: 'image/png',
    mediaType: 'image',
    extension: '.png',
    width: 10,
    height: 20,
    urls: [`http://127.0.0.1/${name}`],
    fetchedAt: '2026-01-01T00:00:00.000Z',
    verifiedAt: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

const COLUMNS = ['md5', 'sha256', 'fileSize', 'mimeType', 'mediaType', 'extension', 'width', 'height', 'urls', 'fetchedAt', 'verifiedAt', 'etag', 'lastModified'];
const JOURNAL = 'journal.jsonl';
const COMPACTING = 'journal.compacting.jsonl';

function rowToRecord(columns: string[], row: unknown[]): StoredRecord {
  const r: Record<string, unknown> = {};
  columns.forEach((c, k) => {
    if (row[k] !== null && row[k] !== undefined) r[c] = row[k];
  });
  return r as unknown as StoredRecord;
}

const checkedLine = (payload: string): string => `${payload}\t${crc32(payload).toString(16).padStart(8, '0')}`;

/** The payload of a line `<payload>\t<crc32 as 8 hex digits>`; throws when the check fails. */
function checked(line: string): string {
  const tab = line.lastIndexOf('\t');
  const payload = line.slice(0, tab);
  if (tab < 0 || line.slice(tab + 1) !== crc32(payload).toString(16).padStart(8, '0')) throw new Error(`bad line checksum: ${line}`);
  return payload;
}

/**
 * Records in the shard files alone, read straight from them (not through
 * IndexDb): JSON lines, a header naming the columns and counting the rows,
 * then one array per record, each followed by a tab and its CRC-32.
 */
function inShards(dir: string): Map<string, StoredRecord> {
  const out = new Map<string, StoredRecord>();
  for (const f of readdirSync(join(dir, 'records'))) {
    if (!/^[0-9a-f]{2}\.jsonl$/.test(f)) continue;
    const lines = readFileSync(join(dir, 'records', f), 'utf8').split('\n');
    const header = JSON.parse(lines[0]) as { v: number; columns: string[]; rows?: number };
    // Format 1 (written by older versions, or by writeShard below) has no row count or checksums.
    if (header.v !== 1 && header.v !== 2) throw new Error(`bad header in ${f}`);
    const rows = lines.slice(1).filter((l) => l !== '');
    if (header.v === 2 && rows.length !== header.rows) throw new Error(`${f}: ${rows.length} rows, header says ${header.rows}`);
    for (const line of rows) {
      const r = rowToRecord(header.columns, JSON.parse(header.v === 2 ? checked(line) : line) as unknown[]);
      out.set(r.md5, r);
    }
  }
  return out;
}

/**
 * The committed batches of a journal file, read independently of IndexDb:
 * a header line, then per batch its entries (a record row, or {"rm":md5})
 * and a commit line {"commit":n,"crc":crc32 of the batch's bytes}. Whatever
 * follows the last commit line is returned as `tail`.
 */
function readJournal(file: string): { batches: ({ put: StoredRecord } | { rm: string })[][]; tail: string } {
  const buf = readFileSync(file);
  const batches: ({ put: StoredRecord } | { rm: string })[][] = [];
  let columns: string[] = [];
  let batch: ({ put: StoredRecord } | { rm: string })[] = [];
  let start = 0;
  let pos = 0;
  let end = 0;
  for (let nl = buf.indexOf(10, pos); nl >= 0; nl = buf.indexOf(10, pos)) {
    const line = buf.toString('utf8', pos, nl);
    const v = JSON.parse(pos === 0 || line.startsWith('{"commit"') ? line : checked(line)) as unknown;
    if (pos === 0) {
      const h = v as { v: number; journal: boolean; columns: string[] };
      if (h.v !== 2 || h.journal !== true) throw new Error(`${file}: not a journal header`);
      columns = h.columns;
    } else if (Array.isArray(v)) {
      batch.push({ put: rowToRecord(columns, v) });
    } else if (typeof (v as { rm?: unknown }).rm === 'string') {
      batch.push({ rm: (v as { rm: string }).rm });
    } else {
      const c = v as { commit: number; crc: number };
      if (c.commit !== batch.length || c.crc !== crc32(buf.subarray(start, pos))) throw new Error(`${file}: bad commit at ${pos}`);
      batches.push(batch);
      batch = [];
      start = end = nl + 1;
    }
    pos = nl + 1;
  }
  return { batches, tail: buf.toString('utf8', end) };
}

/**
 * What a restart would find, read independently of IndexDb: the shards, then
 * the journals replayed in order (the compacting one first).
 */
function onDisk(dir: string): Map<string, StoredRecord> {
  const out = inShards(dir);
  for (const name of [COMPACTING, JOURNAL]) {
    if (!existsSync(join(dir, name))) continue;
    for (const batch of readJournal(join(dir, name)).batches) {
      for (const e of batch) {
        if ('put' in e) out.set(e.put.md5, e.put);
        else out.delete(e.rm);
      }
    }
  }
  return out;
}

/** Copy an index dir (beside it) as it is on disk now: what a crash at this instant would leave. */
let snapshots = 0;
function snapshot(dir: string): string {
  const copy = join(dirname(dir), `crash-${++snapshots}`);
  cpSync(dir, copy, { recursive: true });
  return copy;
}

const shardFileNames = (dir: string): string[] => readdirSync(join(dir, 'records')).filter((f) => /^[0-9a-f]{2}\.jsonl$/.test(f));

/** A shard file of format 1 (no row count, no row checksums), as an older version wrote it. */
function writeShard(dir: string, shard: string, records: StoredRecord[]): void {
  const header = JSON.stringify({ v: 1, columns: COLUMNS });
  const rows = records.map((r) => JSON.stringify(COLUMNS.map((c) => (r as unknown as Record<string, unknown>)[c] ?? null)));
  writeFileSync(join(dir, 'records', `${shard}.jsonl`), [header, ...rows].join('\n') + '\n');
}

const codeOf = (e: unknown): string | undefined => (e instanceof MediaCacheError ? e.code : undefined);

t.test('put/get/url map/remove and incremental stats', async (t) => {
  const dir = join(t.testdir(), 'index');
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  t.equal(db.size, 0);
  t.ok(db.needsRebuild, 'a fresh index asks for an adopting sweep');

  const a = rec('a');
  const b = rec('b', { mediaType: 'video', mimeType: 'video/mp4', extension: '.mp4', fileSize: 5000, width: undefined, height: undefined });
  db.put(a);
  db.put(b);
  t.equal(db.size, 2);
  t.same(db.get(a.md5), a);
  t.equal(db.get(md5Of('nope')), undefined);
  t.equal(db.md5ForUrl(a.urls[0]), a.md5);
  t.equal(db.md5ForUrl('http://127.0.0.1/unknown'), undefined);

  // get() hands out copies: mutating one cannot corrupt the index or its stats.
  const copy = db.get(a.md5)!;
  copy.fileSize = 1;
  copy.urls.push('http://evil/');
  t.equal(db.get(a.md5)!.fileSize, 100);
  t.equal(db.get(a.md5)!.urls.length, 1);

  let s = db.stats();
  t.equal(s.totalFiles, 2);
  t.equal(s.totalSize, 5100);
  t.same(s.byType.image, { count: 1, size: 100 });
  t.same(s.byType.video, { count: 1, size: 5000 });

  // Replacing a record adjusts stats instead of double counting.
  db.put({ ...a, fileSize: 300, urls: [...a.urls, 'http://127.0.0.1/a2'] });
  s = db.stats();
  t.equal(s.totalFiles, 2);
  t.equal(s.totalSize, 5300);
  t.equal(db.md5ForUrl('http://127.0.0.1/a2'), a.md5);

  db.addUrl(b.md5, 'http://127.0.0.1/b-mirror');
  db.addUrl(b.md5, 'http://127.0.0.1/b-mirror');
  t.same(db.get(b.md5)!.urls, [...b.urls, 'http://127.0.0.1/b-mirror'], 'addUrl is idempotent');
  t.equal(db.md5ForUrl('http://127.0.0.1/b-mirror'), b.md5);
  t.throws(() => db.addUrl(md5Of('nope'), 'http://x/'), { code: 'E_NOT_FOUND' });

  const removed = db.remove(a.md5);
  t.equal(removed?.md5, a.md5);
  t.equal(db.remove(a.md5), undefined, 'second remove finds nothing');
  t.equal(db.size, 1);
  t.equal(db.md5ForUrl(a.urls[0]), undefined, 'urls of a removed record are forgotten');
  t.equal(db.md5ForUrl('http://127.0.0.1/a2'), undefined);
  s = db.stats();
  t.equal(s.totalFiles, 1);
  t.equal(s.totalSize, 5000);
  t.same(s.byType.image, { count: 0, size: 0 });
  t.same([...db.records()].map((r) => r.md5), [b.md5]);
  await db.close();
});

t.test('put validates records', async (t) => {
  const db = await IndexDb.open(t.testdir(), { flushDelayMs: 10_000 });
  for (const bad of [
    { ...rec('x'), md5: 'ABC' },
    { ...rec('x'), md5: md5Of('x').toUpperCase() },
    { ...rec('x'), sha256: 'zz' },
    { ...rec('x'), fileSize: -1 },
    { ...rec('x'), mediaType: 'hologram' },
    { ...rec('x'), urls: 'http://x/' },
  ]) {
    let code: string | undefined;
    try {
      db.put(bad as unknown as StoredRecord);
    } catch (e) {
      code = codeOf(e);
    }
    t.equal(code, 'E_BAD_REQUEST', JSON.stringify(bad).slice(0, 60));
  }
  t.equal(db.size, 0);
  await db.close();
});

t.test('a URL belongs to one record: re-putting it elsewhere moves it', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const url = 'http://127.0.0.1/changing';
  const v1 = rec('v1', { urls: [url, 'http://127.0.0.1/other'] });
  const v2 = rec('v2', { urls: [url], fetchedAt: '2026-02-01T00:00:00.000Z' });
  db.put(v1);
  db.put(v2);
  t.equal(db.md5ForUrl(url), v2.md5);
  t.same(db.get(v1.md5)!.urls, ['http://127.0.0.1/other'], 'old content no longer claims the url');
  await db.close();
  const again = await IndexDb.open(dir);
  t.equal(again.md5ForUrl(url), v2.md5);
  t.equal(again.md5ForUrl('http://127.0.0.1/other'), v1.md5);

  // addUrl moves a URL the same way, durably.
  again.addUrl(v1.md5, url);
  t.equal(again.md5ForUrl(url), v1.md5);
  t.same(again.get(v2.md5)!.urls, []);
  await again.close();
  const third = await IndexDb.open(dir);
  t.equal(third.md5ForUrl(url), v1.md5);
  t.same(third.get(v1.md5)!.urls, ['http://127.0.0.1/other', url]);
  t.same(third.get(v2.md5)!.urls, []);
  // records() hands out a snapshot per shard: removing while iterating is safe.
  for (const r of third.records()) third.remove(r.md5);
  t.equal(third.size, 0);
  t.equal(third.md5ForUrl(url), undefined);
  await third.close();
});

t.test('findByPrefix: shard-local, short, ambiguous, invalid', async (t) => {
  const db = await IndexDb.open(t.testdir(), { flushDelayMs: 10_000 });
  const all: StoredRecord[] = [];
  for (let i = 0; i < 600; i++) {
    const r = rec(`p${i}`);
    all.push(r);
    db.put(r);
  }
  const target = all[123];
  t.same(db.findByPrefix(target.md5).map((r) => r.md5), [target.md5], 'full md5');
  t.same(db.findByPrefix(target.md5.toUpperCase()).map((r) => r.md5), [target.md5], 'case-insensitive');
  for (const len of [1, 2, 3, 4]) {
    const p = target.md5.slice(0, len);
    const expected = all.filter((r) => r.md5.startsWith(p)).map((r) => r.md5).sort();
    t.same(db.findByPrefix(p).map((r) => r.md5), expected, `prefix of ${len}`);
    t.same(db.findByPrefix(p, 2).map((r) => r.md5), expected.slice(0, 2), `limit 2 for prefix of ${len}`);
  }
  // Ambiguity as the caller sees it: 1-hex-digit prefixes over 600 records always match several.
  t.ok(db.findByPrefix(target.md5[0], 2).length === 2, 'ambiguous prefix returns several');
  t.same(db.findByPrefix('0123456789abcdef0123456789abcdef'), []);
  t.same(db.findByPrefix(target.md5, 0), []);
  for (const bad of ['', 'xyz', '0'.repeat(33), '12 34']) {
    t.throws(() => db.findByPrefix(bad), { code: 'E_BAD_REQUEST' }, JSON.stringify(bad));
  }
  await db.close();
});

t.test('closeCompactBytes: close leaves a small journal for the next open, and compacts a big one', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir, { closeCompactBytes: 64 * 1024 });
  const recs = Array.from({ length: 20 }, (_, i) => rec(`s${i}`));
  for (const r of recs) db.put(r);
  await db.close();
  t.equal(db.diagnostics.shardWrites, 0, 'no shard written at close');
  t.equal(db.diagnostics.compactions, 0);
  t.same(shardFileNames(dir), []);
  t.ok(existsSync(join(dir, JOURNAL)), 'the journal stays');
  t.equal(readJournal(join(dir, JOURNAL)).tail, '', 'every batch committed');

  const again = await IndexDb.open(dir, { closeCompactBytes: 64 * 1024 });
  t.equal(again.size, 20, 'the next open replays it');
  for (const r of recs) t.same(again.get(r.md5), r);
  // Past the threshold, close compacts as always.
  const big = Array.from({ length: 400 }, (_, i) => rec(`b${i}`, { urls: [`http://example.test/${'x'.repeat(200)}/${i}`] }));
  for (const r of big) again.put(r);
  await again.flush();
  t.ok(again.diagnostics.journalBytes >= 64 * 1024, 'journal now over the threshold');
  await again.close();
  t.equal(again.diagnostics.compactions, 1);
  t.notOk(existsSync(join(dir, JOURNAL)), 'journal compacted away');
  t.equal(inShards(dir).size, 420, 'the shards alone hold everything');
});

t.test('an older index (version 1: shards only) is marked with the current version at open, before anything is journaled', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir);
  const old = rec('v1');
  db.put(old);
  await db.close();
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ schemaVersion: 1, shardDigits: 2, createdAt: '2026-01-01T00:00:00.000Z' }));
  const again = await IndexDb.open(dir);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  t.equal(meta.schemaVersion, SCHEMA_VERSION, 'upgraded on disk at open');
  t.same(meta.shards, [old.md5.slice(0, 2)], 'the shard files found are listed');
  t.equal(meta.createdAt, '2026-01-01T00:00:00.000Z', 'the rest of meta kept');
  t.notOk(existsSync(join(dir, JOURNAL)), 'nothing journaled yet');
  t.same(again.get(old.md5), old);
  await again.close();
});

t.test('writes are coalesced: many puts, one journal append; shards written at close', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir, { flushDelayMs: 100 });
  const appends = db.diagnostics.journalAppends;
  const recs = Array.from({ length: 100 }, (_, i) => rec(`c${i}`));
  for (const r of recs) db.put(r);
  const dirtyShards = new Set(recs.map((r) => r.md5.slice(0, 2)));
  t.equal(db.diagnostics.journalAppends, appends, 'nothing written synchronously');
  await waitFor(() => db.diagnostics.journalAppends > appends, { what: 'coalesced flush' });
  t.equal(db.diagnostics.journalAppends - appends, 1, 'one journal append for 100 puts');
  t.equal(db.diagnostics.shardWrites, 0, 'no shard rewritten by a flush');
  t.same(shardFileNames(dir), [], 'no shard file created');
  t.equal(onDisk(dir).size, 100, 'all durable in the journal');
  const journal = readJournal(join(dir, JOURNAL));
  t.equal(journal.batches.length, 1);
  t.equal(journal.batches[0].length, 100);
  t.equal(journal.tail, '');
  t.equal(db.diagnostics.journalBytes, statSync(join(dir, JOURNAL)).size);
  t.ok(db.diagnostics.lastFlushMs > 0, 'lastFlushMs measured');

  // A forced flush with nothing pending writes nothing.
  await db.flush();
  t.equal(db.diagnostics.journalAppends - appends, 1);

  // flush() forces an immediate append and resolves once the data is durable.
  const late = rec('late');
  db.put(late);
  await db.flush();
  t.same(onDisk(dir).get(late.md5), late);
  t.equal(db.diagnostics.journalAppends - appends, 2);
  t.equal(readJournal(join(dir, JOURNAL)).batches.length, 2, 'appended to the same file');

  // close() compacts: every dirty shard written once, the journal gone.
  await db.close();
  dirtyShards.add(late.md5.slice(0, 2));
  t.equal(db.diagnostics.shardWrites, dirtyShards.size, 'one write per dirty shard');
  t.equal(db.diagnostics.compactions, 1);
  t.same(new Set(shardFileNames(dir).map((f) => f.slice(0, 2))), dirtyShards, 'only dirty shards exist as files');
  t.notOk(existsSync(join(dir, JOURNAL)), 'journal removed after compaction');
  t.notOk(existsSync(join(dir, COMPACTING)));
  t.equal(inShards(dir).size, 101, 'the shards alone hold everything');
});

t.test('concurrent flushes never write a shard twice at once; changes during a flush are kept', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const r1 = rec('same-shard-1');
  db.put(r1);
  const f1 = db.flush();
  const r2 = rec('during-flush');
  db.put(r2); // lands after the first flush snapshotted its shards
  const f2 = db.flush();
  const f3 = db.flush();
  t.equal(f2, f3, 'flushes queued behind a running one are joined');
  await Promise.all([f1, f2, f3]);
  const disk = onDisk(dir);
  t.same(disk.get(r1.md5), r1);
  t.same(disk.get(r2.md5), r2);
  await db.close();
});

t.test('reopen reads everything back, with stats and url map', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir);
  const recs = Array.from({ length: 300 }, (_, i) =>
    rec(`r${i}`, {
      mediaType: (['image', 'video', 'audio', 'document'] as const)[i % 4],
      fileSize: i,
      etag: i % 2 ? `"e${i}"` : undefined,
      lastModified: i % 3 ? undefined : 'Wed, 21 Oct 2015 07:28:00 GMT',
      urls: [`http://127.0.0.1/r${i}`, `http://127.0.0.1/alt/r${i}`],
    }),
  );
  for (const r of recs) {
    if (r.etag === undefined) delete r.etag;
    if (r.lastModified === undefined) delete r.lastModified;
    db.put(r);
  }
  db.remove(recs[0].md5);
  const stats = db.stats();
  await db.close();
  t.throws(() => db.put(rec('after-close')), { code: 'E_UNAVAILABLE' });

  const again = await IndexDb.open(dir);
  t.equal(again.needsRebuild, false);
  t.same(again.recovered, []);
  t.equal(again.size, 299);
  t.same(again.stats(), stats);
  t.equal(again.get(recs[0].md5), undefined);
  for (const r of recs.slice(1)) {
    t.same(again.get(r.md5), r);
    if (again.md5ForUrl(r.urls[1]) !== r.md5) t.fail(`url map for ${r.urls[1]}`);
  }
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  t.equal(meta.schemaVersion, SCHEMA_VERSION);
  await again.close();
});

/** An index of 600 records (2-3 per shard), closed; returns the records by shard, in put order (the order of a shard's rows). */
async function populated(dir: string): Promise<{ recs: StoredRecord[]; byShard: Map<string, StoredRecord[]> }> {
  const db = await IndexDb.open(dir);
  const recs = Array.from({ length: 600 }, (_, i) => rec(`g${i}`));
  for (const r of recs) db.put(r);
  await db.close();
  const byShard = new Map<string, StoredRecord[]>();
  for (const r of recs) byShard.set(r.md5.slice(0, 2), [...(byShard.get(r.md5.slice(0, 2)) ?? []), r]);
  return { recs, byShard };
}

/** The shards with at least `n` records, in md5 order. */
const shardsWith = (byShard: Map<string, StoredRecord[]>, n: number): string[] => [...byShard.keys()].filter((k) => byShard.get(k)!.length >= n).sort();

t.test('a damaged shard loses only the rows it cannot read: kept aside, rewritten, reported', async (t) => {
  const dir = t.testdir();
  const { recs, byShard } = await populated(dir);
  const [flipS, cutS, lineS, v1S, headS] = shardsWith(byShard, 3);
  const file = (s: string): string => join(dir, 'records', `${s}.jsonl`);
  const lost: StoredRecord[] = [];

  // 1. One flipped hex digit in a sha256: still valid JSON and a valid record; the row checksum catches it.
  const flipText = readFileSync(file(flipS), 'utf8');
  const victim = byShard.get(flipS)![1];
  const at = flipText.indexOf(victim.sha256) + 10;
  writeFileSync(file(flipS), flipText.slice(0, at) + (flipText[at] === 'a' ? 'b' : 'a') + flipText.slice(at + 1));
  lost.push(victim);
  // 2. Cut in the middle of its last row.
  writeFileSync(file(cutS), readFileSync(file(cutS), 'utf8').slice(0, -20));
  lost.push(byShard.get(cutS)!.at(-1)!);
  // 3. Cut exactly at a line end: only the header's row count shows it.
  const lines = readFileSync(file(lineS), 'utf8').split('\n');
  writeFileSync(file(lineS), lines.slice(0, -2).join('\n') + '\n');
  lost.push(byShard.get(lineS)!.at(-1)!);
  // 4. A format-1 shard (no checksums) with one row that does not validate.
  writeShard(dir, v1S, [...byShard.get(v1S)!, { md5: 'nope' } as unknown as StoredRecord]);
  // 5. A garbled header: the rows carry their own checks.
  writeFileSync(file(headS), readFileSync(file(headS), 'utf8').replace('"columns"', '"colu\u0000ns"'));

  const again = await IndexDb.open(dir, { now: () => new Date('2026-03-04T05:06:07.089Z') });
  t.ok(again.needsRebuild, 'an adopting sweep is asked for');
  t.equal(again.damage.files.length, 5, 'each damaged shard is kept aside');
  t.same(again.recovered, again.damage.files);
  for (const f of again.damage.files) t.ok(existsSync(f), `${f} kept for inspection`);
  t.ok(again.damage.files.includes(`${file(flipS)}.corrupt-2026-03-04T050607.089Z`));
  t.equal(again.damage.lostRows, 4, 'one row lost per damaged place (the invalid format-1 row included)');
  t.same(again.damage.missingShards, []);
  t.equal(again.size, recs.length - lost.length, 'every other row is kept');
  for (const r of lost) t.equal(again.get(r.md5), undefined, `lost: ${r.md5}`);
  for (const r of recs.filter((r) => !lost.includes(r))) if (!t.same(again.get(r.md5), r)) break;
  t.equal(again.md5ForUrl(victim.urls[0]), undefined);
  // Rewritten at open from what was read: intact again before any sweep.
  t.equal(inShards(dir).size, recs.length - lost.length, 'the damaged shards were rewritten (inShards checks every row)');
  again.put(victim);
  await again.close();

  const third = await IndexDb.open(dir);
  t.same(third.recovered, [], 'reported once');
  t.equal(third.needsRebuild, false);
  t.same(third.get(victim.md5), victim);
  await third.close();
});

t.test('a deleted shard is noticed at open (meta.json lists the shard files) and asks for a rebuild', async (t) => {
  const dir = t.testdir();
  const { recs, byShard } = await populated(dir);
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { shards: string[] };
  t.same(meta.shards, [...byShard.keys()].sort(), 'every shard written is listed');
  const [gone] = shardsWith(byShard, 2);
  rmSync(join(dir, 'records', `${gone}.jsonl`));
  const again = await IndexDb.open(dir);
  t.same(again.damage.missingShards, [gone]);
  t.ok(again.needsRebuild);
  t.equal(again.size, recs.length - byShard.get(gone)!.length);
  t.ok(existsSync(join(dir, 'records', `${gone}.jsonl`)), 'written again (empty) at open');
  await again.close();
  const third = await IndexDb.open(dir);
  t.same(third.damage.missingShards, [], 'reported once');
  t.equal(third.needsRebuild, false);
  await third.close();
});

t.test('damaged meta.json and stale temp files', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir);
  db.put(rec('m'));
  await db.close();
  writeFileSync(join(dir, 'meta.json'), '');
  writeFileSync(join(dir, 'records', '.tmp-00.jsonl-999999999-1'), 'partial');
  const again = await IndexDb.open(dir);
  t.equal(again.recovered.length, 1);
  t.match(again.recovered[0], /meta\.json\.corrupt-/);
  t.equal(again.size, 1, 'records survive a damaged meta.json');
  t.equal(JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')).schemaVersion, SCHEMA_VERSION, 'meta rewritten');
  t.notOk(existsSync(join(dir, 'records', '.tmp-00.jsonl-999999999-1')), 'temp file of a dead writer removed');
  await again.close();
});

t.test('an index from a newer version is refused', async (t) => {
  const dir = t.testdir({ 'meta.json': JSON.stringify({ schemaVersion: 99, shardDigits: 2 }) });
  await t.rejects(IndexDb.open(dir), { code: 'E_UNAVAILABLE' });
});

t.test('a deleted index dir opens fresh and asks for a rebuild', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir);
  db.put(rec('d'));
  await db.close();
  const reopened = await IndexDb.open(dir);
  t.equal(reopened.needsRebuild, false);
  await reopened.close();
  rmSync(dir, { recursive: true });
  const fresh = await IndexDb.open(dir);
  t.equal(fresh.size, 0);
  t.ok(fresh.needsRebuild);
  t.same(fresh.recovered, []);
  t.ok(statSync(join(dir, 'meta.json')).isFile(), 'meta written at open');
  await fresh.close();
});

t.test('two shards claiming one URL after a crash: the later fetch keeps it', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir);
  const url = 'http://127.0.0.1/twice';
  const older = rec('older', { urls: [url], fetchedAt: '2026-01-01T00:00:00.000Z' });
  const newer = rec('newer', { urls: [url], fetchedAt: '2026-01-02T00:00:00.000Z' });
  db.put(older);
  await db.close();
  // Simulate a crash between the two renames of one flush: newer's shard was
  // written, older's (without the url) was not.
  const shard = newer.md5.slice(0, 2);
  const existing = [...onDisk(dir).values()].filter((r) => r.md5.startsWith(shard));
  writeShard(dir, shard, [...existing, newer]);
  const again = await IndexDb.open(dir);
  t.equal(again.md5ForUrl(url), newer.md5);
  t.same(again.get(older.md5)!.urls, []);
  t.same(onDisk(dir).get(older.md5)!.urls, [], 'loser journaled at open');
  await again.close();
  t.same(inShards(dir).get(older.md5)!.urls, [], 'and in its shard after close');
});

t.test('open yields to the event loop between shards', async (t) => {
  const dir = t.testdir({ records: {} });
  // Every shard populated: 40 records per shard, written directly.
  for (let i = 0; i < 256; i++) {
    const shard = i.toString(16).padStart(2, '0');
    const recs: StoredRecord[] = [];
    for (let k = 0; recs.length < 40; k++) {
      const r = rec(`y${i}-${k}`);
      recs.push({ ...r, md5: shard + r.md5.slice(2) });
    }
    writeShard(dir, shard, recs);
  }
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const db = await IndexDb.open(dir);
  clearInterval(timer);
  t.equal(db.size, 256 * 40);
  t.equal(db.needsRebuild, true, 'shards without meta.json: something is off, ask for a sweep');
  t.ok(ticks >= 5, `timers ran while loading (${ticks} ticks)`);
  await db.close();
  const again = await IndexDb.open(dir);
  t.equal(again.needsRebuild, false, 'meta.json rewritten at open');
  await again.close();
});

t.test('a failing write keeps the data dirty, rejects flush, and retries until it lands', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir, { flushDelayMs: 10 });
  const a = rec('fail-a');
  db.put(a);
  await db.flush();
  // Make every write fail: the index dir becomes a regular file (ENOTDIR/EEXIST).
  rmSync(dir, { recursive: true });
  writeFileSync(dir, 'not a dir');
  const b = rec('fail-b');
  db.put(b);
  await t.rejects(db.flush(), { name: 'MediaCacheError' }, 'flush reports the failure');
  t.same(db.get(b.md5), b, 'memory still has the record');
  // The disk comes back: the scheduled retry (>= 1 s backoff) rewrites the index from memory.
  rmSync(dir);
  mkdirSync(dir);
  // Both: the rewrite writes shards in parallel, so b's may land before a's.
  await waitFor(() => existsSync(join(dir, 'records')) && onDisk(dir).has(b.md5) && onDisk(dir).has(a.md5), {
    timeoutMs: 15_000,
    what: 'retried write',
  });
  t.same(onDisk(dir).get(b.md5), b);
  t.same(onDisk(dir).get(a.md5), a, 'records flushed before the loss are written again too');
  await db.close();
  const again = await IndexDb.open(dir);
  t.equal(again.size, 2);
  t.same(again.recovered, []);
  await again.close();
});

t.test('a failing compaction keeps the journal; close still resolves and the next open replays it', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const recs = Array.from({ length: 10 }, (_, i) => rec(`cf${i}`));
  for (const r of recs) db.put(r);
  await db.flush();
  // Shard writes fail (records/ is a regular file); journal appends do not.
  rmSync(join(dir, 'records'), { recursive: true });
  writeFileSync(join(dir, 'records'), 'not a dir');
  const late = rec('cf-late');
  db.put(late);
  await db.flush();
  await db.close();
  t.equal(db.diagnostics.compactions, 0, 'compaction failed');
  t.ok(existsSync(join(dir, COMPACTING)) || existsSync(join(dir, JOURNAL)), 'journal kept');
  rmSync(join(dir, 'records'));
  const again = await IndexDb.open(dir);
  t.equal(again.size, 11, 'every record replayed from the journal');
  t.same(again.get(late.md5), late);
  t.same(again.recovered, []);
  await again.close();
  t.equal(inShards(dir).size, 11, 'compacted at the next close');
  t.notOk(existsSync(join(dir, COMPACTING)));
  t.notOk(existsSync(join(dir, JOURNAL)));
});

t.test('an index dir deleted while open is recreated from memory at the next flush', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const recs = Array.from({ length: 20 }, (_, i) => rec(`gone${i}`));
  for (const r of recs) db.put(r);
  await db.flush();
  rmSync(dir, { recursive: true });
  db.put(rec('after-delete'));
  await db.flush();
  t.equal(onDisk(dir).size, 21, 'every record written again');
  t.same([...db.md5s()].sort(), [...onDisk(dir).keys()].sort(), 'md5s() lists every record');
  await db.close();
  const again = await IndexDb.open(dir);
  t.equal(again.size, 21);
  t.equal(again.needsRebuild, false);
  await again.close();
});

t.test('replay after a crash: the journal on top of the shards, tombstones included', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const base = Array.from({ length: 30 }, (_, i) => rec(`j${i}`, { fileSize: i }));
  for (const r of base) db.put(r);
  await db.close(); // the shards hold `base`; no journal
  t.notOk(existsSync(join(dir, JOURNAL)));

  const db2 = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  t.equal(db2.diagnostics.replayedEntries, 0, 'a clean close leaves nothing to replay');
  const added = Array.from({ length: 20 }, (_, i) => rec(`jn${i}`));
  for (const r of added) db2.put(r);
  db2.remove(base[0].md5); // only in a shard: the tombstone must remove it at replay
  db2.remove(added[0].md5); // put and removed before the flush: a tombstone for nothing
  db2.put({ ...base[1], verifiedAt: '2026-05-05T00:00:00.000Z', urls: [...base[1].urls, 'http://127.0.0.1/extra'] });
  db2.addUrl(added[1].md5, base[2].urls[0]); // moves a URL off a record that is only in a shard
  db2.remove(base[3].md5);
  await db2.flush();
  db2.put(base[3]); // removed in batch 1, back in batch 2
  db2.remove(added[4].md5); // put in batch 1, removed in batch 2
  await db2.flush();
  const expected = new Map([...db2.records()].map((r) => [r.md5, r]));
  const stats = db2.stats();
  const crashed = snapshot(dir); // a SIGKILL now: nothing compacted since
  await db2.close();

  t.equal(inShards(crashed).size, 30, 'the shards alone lack the journaled changes');
  t.equal(readJournal(join(crashed, JOURNAL)).batches.length, 2);
  const again = await IndexDb.open(crashed, { flushDelayMs: 10_000 });
  t.same(again.recovered, []);
  t.equal(again.needsRebuild, false);
  t.ok(again.diagnostics.replayedEntries >= 26, `replayed ${again.diagnostics.replayedEntries} entries`);
  t.same(new Map([...again.records()].map((r) => [r.md5, r])), expected, 'exactly the flushed state');
  t.equal(again.get(base[0].md5), undefined, 'tombstone of a shard record replayed');
  t.equal(again.get(added[0].md5), undefined);
  t.same(again.get(base[3].md5), base[3], 'removed then put back: present');
  t.equal(again.get(added[4].md5), undefined, 'put then removed: absent');
  t.equal(again.md5ForUrl(base[2].urls[0]), added[1].md5, 'a URL moved by the journal stays moved');
  t.same(again.get(base[2].md5)!.urls, []);
  t.equal(again.md5ForUrl('http://127.0.0.1/extra'), base[1].md5);
  t.equal(again.md5ForUrl(base[0].urls[0]), undefined);
  t.same(again.stats(), stats, 'stats derived after replay');

  // The next append goes into the same journal file.
  const before = statSync(join(crashed, JOURNAL)).size;
  again.put(rec('after-replay'));
  await again.flush();
  t.ok(statSync(join(crashed, JOURNAL)).size > before);
  t.equal(readJournal(join(crashed, JOURNAL)).batches.length, 3);
  await again.close();
  t.notOk(existsSync(join(crashed, JOURNAL)), 'compacted at close');
  t.equal(inShards(crashed).size, expected.size + 1);
});

t.test('a torn last append is ignored and cut away by the next append', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const a = rec('torn-a');
  const b = rec('torn-b');
  db.put(a);
  await db.flush();
  db.put(b);
  await db.flush();
  const crashed = snapshot(dir);
  await db.close();

  // A crash mid-append: complete entry lines, then half a line, no commit line.
  const c = rec('torn-c');
  const row = JSON.stringify(COLUMNS.map((k) => (c as unknown as Record<string, unknown>)[k] ?? null));
  const journal = join(crashed, JOURNAL);
  const intact = statSync(journal).size;
  appendFileSync(journal, `${checkedLine(row)}\n${checkedLine(`{"rm":"${a.md5}"}`)}\n${row.slice(0, 40)}`);
  const again = await IndexDb.open(crashed, { flushDelayMs: 10_000 });
  t.same(again.recovered, [], 'a torn tail is not damage');
  t.equal(again.needsRebuild, false);
  t.equal(again.size, 2);
  t.same(again.get(a.md5), a, 'the unacknowledged removal is not applied');
  t.equal(again.get(c.md5), undefined, 'the unacknowledged put is not applied');
  t.equal(again.diagnostics.journalBytes, intact);

  const d = rec('torn-d');
  again.put(d);
  await again.flush();
  const text = readFileSync(journal, 'utf8');
  t.notOk(text.includes(c.md5), 'the torn tail was truncated before the append');
  const j = readJournal(journal); // throws on any line that is not a committed entry
  t.equal(j.tail, '');
  t.equal(j.batches.length, 3);
  const crashed2 = snapshot(crashed);
  await again.close();
  const third = await IndexDb.open(crashed2);
  t.same(third.recovered, []);
  t.same([...third.records()].map((r) => r.md5).sort(), [a.md5, b.md5, d.md5].sort());
  await third.close();

  // Torn in the very first append: half a header.
  const fresh = join(dirname(dir), 'fresh');
  await (await IndexDb.open(fresh)).close();
  writeFileSync(join(fresh, JOURNAL), '{"v":1,"jour');
  const f = await IndexDb.open(fresh, { flushDelayMs: 10_000 });
  t.same(f.recovered, []);
  t.equal(f.size, 0);
  f.put(a);
  await f.flush();
  t.equal(readJournal(join(fresh, JOURNAL)).batches.length, 1, 'header rewritten, batch readable');
  const crashed3 = snapshot(fresh);
  await f.close();
  const f2 = await IndexDb.open(crashed3);
  t.same(f2.get(a.md5), a);
  await f2.close();
});

t.test('compaction at the threshold: shards written in the background, appends go on into a new journal', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000, compactBytes: 4096 });
  const first = Array.from({ length: 20 }, (_, i) => rec(`cmp${i}`)); // ~6 KB of rows: over the threshold
  for (const r of first) db.put(r);
  await db.flush(); // queues the rotation right behind itself
  t.equal(db.diagnostics.shardWrites, 0, 'the flush itself wrote no shard');
  const during = rec('cmp-during');
  db.put(during);
  await db.flush(); // runs after the rotation: into the new journal, without waiting for the shards
  const fresh = readJournal(join(dir, JOURNAL)).batches.flat();
  t.same(
    fresh.map((e) => ('put' in e ? e.put.md5 : e.rm)),
    [during.md5],
    'the new journal holds only what was flushed after the rotation',
  );
  await waitFor(() => db.diagnostics.compactions >= 1, { what: 'background compaction' });
  t.notOk(existsSync(join(dir, COMPACTING)), 'the compacted journal is deleted');
  const shards = inShards(dir);
  for (const r of first) if (!shards.has(r.md5)) t.fail(`${r.md5} not compacted into its shard`);
  t.ok(db.diagnostics.shardWrites >= new Set(first.map((r) => r.md5.slice(0, 2))).size);
  t.equal(onDisk(dir).size, 21);
  t.ok(db.diagnostics.lastCompactionMs > 0);
  await db.close();
  t.notOk(existsSync(join(dir, JOURNAL)));
  t.equal(inShards(dir).size, 21);

  // The default threshold (8 MiB at least) does not compact a small index before close.
  const dir2 = join(dirname(dir), 'default');
  const db2 = await IndexDb.open(dir2, { flushDelayMs: 10_000 });
  for (let k = 0; k < 20; k++) {
    for (let i = 0; i < 25; i++) db2.put(rec(`dflt${k}-${i}`));
    await db2.flush();
  }
  t.equal(db2.diagnostics.journalAppends, 20);
  t.equal(db2.diagnostics.compactions, 0);
  t.equal(db2.diagnostics.shardWrites, 0);
  await db2.close();
  t.equal(db2.diagnostics.compactions, 1);
  t.equal(inShards(dir2).size, 500);
});

t.test('replay is idempotent: shards already compacted, journal not yet deleted', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const recs = Array.from({ length: 40 }, (_, i) => rec(`idem${i}`, { fileSize: i }));
  for (const r of recs) db.put(r);
  await db.flush();
  db.remove(recs[0].md5);
  db.addUrl(recs[1].md5, recs[2].urls[0]);
  db.put({ ...recs[3], verifiedAt: '2026-06-01T00:00:00.000Z' });
  await db.flush();
  const journalBytes = readFileSync(join(dir, JOURNAL));
  const expected = new Map([...db.records()].map((r) => [r.md5, r]));
  const stats = db.stats();
  await db.close(); // compacts and deletes the journal

  // A crash after the compaction's shard renames, before the journal was deleted.
  for (const name of [JOURNAL, COMPACTING]) {
    writeFileSync(join(dir, name), journalBytes);
    const again = await IndexDb.open(dir, { flushDelayMs: 10_000 });
    t.same(again.recovered, [], `${name}: no damage`);
    t.equal(again.needsRebuild, false);
    t.ok(again.diagnostics.replayedEntries > 0, `${name}: replayed`);
    t.same(new Map([...again.records()].map((r) => [r.md5, r])), expected, `${name}: same records`);
    t.same(again.stats(), stats, `${name}: same stats`);
    t.equal(again.md5ForUrl(recs[2].urls[0]), recs[1].md5);
    if (name === COMPACTING) t.notOk(existsSync(join(dir, COMPACTING)), 'an interrupted compaction is finished at open');
    await again.close();
    t.same(inShards(dir), expected, `${name}: shards unchanged by the second compaction`);
    t.notOk(existsSync(join(dir, name)));
  }

  // Both journals left by a crash mid-compaction: the older replayed first.
  const older = join(dirname(dir), 'older');
  const d1 = await IndexDb.open(older, { flushDelayMs: 10_000 });
  const x = rec('order-x');
  d1.put(x);
  await d1.flush();
  const j1 = readFileSync(join(older, JOURNAL));
  d1.put({ ...x, fileSize: 999 });
  await d1.flush();
  const j2 = readFileSync(join(older, JOURNAL)).subarray(0);
  await d1.close();
  writeFileSync(join(older, COMPACTING), j1);
  writeFileSync(join(older, JOURNAL), j2.subarray(0)); // j2 holds both batches; the newer value must win
  const d2 = await IndexDb.open(older);
  t.equal(d2.get(x.md5)!.fileSize, 999, 'the newer journal wins');
  t.notOk(existsSync(join(older, COMPACTING)));
  t.notOk(existsSync(join(older, JOURNAL)), 'both journals retired once the shards hold them');
  await d2.close();
  t.equal(inShards(older).get(x.md5)!.fileSize, 999);
});

t.test('a damaged journal: readable batches kept, written to the shards, the file moved aside, rebuild asked for', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const db = await IndexDb.open(dir, { flushDelayMs: 10_000 });
  const recs = Array.from({ length: 10 }, (_, i) => rec(`dmg${i}`, { fileSize: 100 + i }));
  for (const r of recs.slice(0, 5)) db.put(r);
  await db.flush();
  for (const r of recs.slice(5)) db.put(r);
  await db.flush();
  db.remove(recs[0].md5);
  await db.flush();
  const clean = snapshot(dir);
  await db.close();
  const now = () => new Date('2026-03-04T05:06:07.089Z');

  // 1. An unreadable line between two committed batches.
  const c1 = snapshot(clean);
  const lines = readFileSync(join(c1, JOURNAL), 'utf8').split('\n');
  const firstCommit = lines.findIndex((l) => l.startsWith('{"commit"'));
  lines.splice(firstCommit + 1, 0, '{"md5": garbage \u0000');
  writeFileSync(join(c1, JOURNAL), lines.join('\n'));
  const a1 = await IndexDb.open(c1, { now, flushDelayMs: 10_000 });
  const aside = join(c1, 'journal.jsonl.corrupt-2026-03-04T050607.089Z');
  t.same(a1.recovered, [aside], 'the journal is moved aside');
  t.ok(a1.needsRebuild, 'an adopting sweep is asked for');
  t.ok(existsSync(aside), 'kept for inspection');
  t.notOk(existsSync(join(c1, JOURNAL)));
  t.equal(a1.size, 9, 'every readable batch applied (the removal too)');
  t.equal(a1.get(recs[0].md5), undefined);
  t.equal(inShards(c1).size, 9, 'written to the shards before the journal was moved aside');
  a1.put(rec('dmg-after'));
  await a1.flush();
  t.equal(readJournal(join(c1, JOURNAL)).batches.length, 1, 'a new journal');
  await a1.close();
  const a1b = await IndexDb.open(c1);
  t.equal(a1b.size, 10);
  t.equal(a1b.needsRebuild, false, 'asked once: the sweep that follows rebuilds');
  await a1b.close();

  // 2. A committed batch whose bytes changed but still parse: the CRC catches it.
  const c2 = snapshot(clean);
  const text = readFileSync(join(c2, JOURNAL), 'utf8');
  writeFileSync(join(c2, JOURNAL), text.replace(',101,', ',199,'));
  const a2 = await IndexDb.open(c2, { now });
  t.equal(a2.recovered.length, 1);
  t.match(a2.recovered[0], /journal\.jsonl\.corrupt-/);
  t.ok(a2.needsRebuild);
  t.equal(a2.size, 8, 'never applied as read: a changed entry is not what was written');
  t.equal(a2.get(recs[1].md5), undefined, 'the record whose line changed is left to the adopting sweep');
  t.equal(a2.damage.lostRows, 1);
  for (const r of recs.slice(2)) t.same(a2.get(r.md5), r, 'the entries that pass their own check are applied');
  await a2.close();

  // 3. A committed batch losing a line: the count catches it.
  const c3 = snapshot(clean);
  const l3 = readFileSync(join(c3, JOURNAL), 'utf8').split('\n');
  l3.splice(2, 1);
  writeFileSync(join(c3, JOURNAL), l3.join('\n'));
  const a3 = await IndexDb.open(c3, { now });
  t.equal(a3.recovered.length, 1);
  t.equal(a3.size, 8, 'the lost line cannot come back; the others do');
  await a3.close();

  // 4. Garbage after the last commit that is not a cut-short append (a complete bad line).
  const c4 = snapshot(clean);
  appendFileSync(join(c4, JOURNAL), 'not json at all\n');
  const a4 = await IndexDb.open(c4, { now });
  t.equal(a4.recovered.length, 1, 'a complete garbage line is damage, not a torn tail');
  t.equal(a4.size, 9);
  await a4.close();

  // 5. A damaged compacting journal beside an intact journal: both replayed, oldest first;
  //    the damaged one moved aside, the intact one deleted once the shards hold both.
  const c5 = snapshot(clean);
  writeFileSync(join(c5, COMPACTING), readFileSync(aside));
  const a5 = await IndexDb.open(c5, { now });
  t.same(a5.recovered, [join(c5, 'journal.compacting.jsonl.corrupt-2026-03-04T050607.089Z')]);
  t.ok(a5.needsRebuild);
  t.equal(a5.size, 9);
  t.notOk(existsSync(join(c5, JOURNAL)), 'the intact journal is retired, not moved aside');
  t.notOk(existsSync(join(c5, COMPACTING)));
  t.equal(inShards(c5).size, 9);
  await a5.close();
});

/** A journal of format 1 (entries without their own checksums), as an older version wrote it. */
function v1Journal(batches: string[][]): Buffer {
  const parts: Buffer[] = [];
  batches.forEach((lines, k) => {
    const body = Buffer.from(`${k === 0 ? `${JSON.stringify({ v: 1, journal: true, columns: COLUMNS })}\n` : ''}${lines.join('\n')}\n`);
    parts.push(body, Buffer.from(`{"commit":${lines.length},"crc":${crc32(body)}}\n`));
  });
  return Buffer.concat(parts);
}

const v1Row = (r: StoredRecord): string => JSON.stringify(COLUMNS.map((c) => (r as unknown as Record<string, unknown>)[c] ?? null));

t.test('a format-1 journal: intact, it is folded into the shards at open; a batch failing its CRC is skipped whole', async (t) => {
  const [a, b, c, d] = ['v1a', 'v1b', 'v1c', 'v1d'].map((n) => rec(n));
  const dir = t.testdir();
  await (await IndexDb.open(dir)).close();
  writeFileSync(join(dir, JOURNAL), v1Journal([[v1Row(a), v1Row(b)], [v1Row(c)], [v1Row(d), `{"rm":"${a.md5}"}`]]));
  const intact = await IndexDb.open(dir);
  t.same(intact.recovered, []);
  t.equal(intact.needsRebuild, false);
  t.same([...intact.records()].map((r) => r.md5).sort(), [b.md5, c.md5, d.md5].sort());
  t.notOk(existsSync(join(dir, JOURNAL)), 'never appended to in the old format: folded into the shards');
  t.equal(inShards(dir).size, 3);
  await intact.close();

  const dmg = t.testdir();
  await (await IndexDb.open(dmg)).close();
  // One flipped hex digit in c's sha256: a valid row, but not what was written.
  const bad = v1Row(c).replace(c.sha256, (c.sha256[0] === 'a' ? 'b' : 'a') + c.sha256.slice(1));
  const good = v1Journal([[v1Row(a), v1Row(b)], [v1Row(c)], [v1Row(d)]]);
  writeFileSync(join(dmg, JOURNAL), good.toString('utf8').replace(v1Row(c), bad));
  const db = await IndexDb.open(dmg);
  t.equal(db.recovered.length, 1, 'moved aside');
  t.ok(db.needsRebuild);
  t.equal(db.get(c.md5), undefined, 'the batch that fails its CRC is not applied');
  t.equal(db.damage.lostRows, 1);
  for (const r of [a, b, d]) t.same(db.get(r.md5), r, 'the intact batches are');
  await db.close();
});

t.test('crash safety: SIGKILL during journal appends and compactions leaves a valid, consistent index', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const child = fileURLToPath(new URL('../../scripts/index-crash-child.ts', import.meta.url));
  let lastDurable = -1;
  // What each life put durably: records start..durable (records between a
  // life's last durable flush and the next life's start may or may not exist).
  const lives: { start: number; durable: number }[] = [];
  // A 16 KiB journal threshold: a compaction every ~2 flushes of 40 records,
  // so one is nearly always running (rotation, shard rewrites, journal
  // deletion) while appends go on.
  const COMPACT_BYTES = '16384';
  let killedMidCompaction = 0;
  let tornTails = 0;
  // Four lives, each reopening what the previous one left and going on. Odd
  // lives are killed as soon as a compaction is seen running; even ones after
  // some flushes, wherever the child is then (mostly mid-append or mid-fdatasync).
  for (let life = 0; life < 4; life++) {
    // Run the child through the TypeScript loader tap gave this process (only
    // that one: coverage instrumentation would triple the child's start-up).
    const tsLoader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const proc = spawn(process.execPath, [...tsLoader, child, dir, '40', COMPACT_BYTES], { stdio: ['ignore', 'ignore', 'pipe'], env });
    t.teardown(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    });
    let durable = -1;
    let start = -1;
    let flushes = 0;
    let errText = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk: string) => {
      errText += chunk;
      const opened = /next (\d+)/.exec(chunk);
      if (opened && start < 0) start = Number(opened[1]);
      for (const m of chunk.matchAll(/durable (\d+)/g)) {
        durable = Math.max(durable, Number(m[1]));
        flushes++;
      }
    });
    const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
    await waitFor(() => flushes >= 5 + life * 3 || proc.exitCode !== null, { timeoutMs: 60_000, what: 'child flushes' });
    if (life % 2 === 1) {
      await waitFor(() => existsSync(join(dir, COMPACTING)) || proc.exitCode !== null, { timeoutMs: 60_000, intervalMs: 1, what: 'a compaction running' });
    }
    t.equal(proc.exitCode, null, `child ${life} still running (stderr: ${errText.slice(-500)})`);
    proc.kill('SIGKILL'); // lands wherever the child is: mid-batch, mid-write, mid-rename
    await exited;
    if (existsSync(join(dir, COMPACTING))) killedMidCompaction++;
    if (existsSync(join(dir, JOURNAL)) && readJournal(join(dir, JOURNAL)).tail !== '') tornTails++;
    t.ok(durable > lastDurable, `life ${life} made progress (durable ${durable})`);
    lastDurable = durable;
    lives.push({ start, durable });
  }
  const putDurably = (k: number): boolean => lives.some((l) => k >= l.start && k <= l.durable);
  t.ok(killedMidCompaction >= 1, `killed during a compaction ${killedMidCompaction} time(s)`);
  t.comment(`kills that cut a journal append short: ${tornTails}`);

  const db = await IndexDb.open(dir);
  t.same(db.recovered, [], 'no shard was damaged: every write was all-or-nothing');
  t.equal(db.needsRebuild, false);
  const hex = (alg: string, s: string): string => createHash(alg).update(s).digest('hex');
  const seen = new Set<number>();
  let latestHolders = 0;
  let problems = 0;
  for (const r of db.records()) {
    const k = r.fileSize;
    seen.add(k);
    // Complete and self-consistent: exactly what the child wrote for record k.
    if (r.md5 !== hex('md5', `rec-${k}`) || r.sha256 !== hex('sha256', `rec-${k}`) || r.urls[0] !== `http://127.0.0.1/r/${k}`) problems++;
    for (const u of r.urls) if (db.md5ForUrl(u) !== r.md5) problems++;
    if (r.urls.includes('http://127.0.0.1/latest')) latestHolders++;
  }
  t.equal(problems, 0, 'every record is complete and the url map agrees with it');
  t.ok(latestHolders <= 1, 'a url belongs to at most one record');
  const holder = db.md5ForUrl('http://127.0.0.1/latest');
  if (holder) t.ok(db.get(holder)!.urls.includes('http://127.0.0.1/latest'), 'url map points at a record that lists the url');
  // Durability: what a child was told was flushed is there (its removals too).
  let missing = 0;
  let resurrected = 0;
  let checked = 0;
  for (let k = 0; k <= lastDurable; k++) {
    if (k % 7 !== 0 && putDurably(k)) {
      checked++;
      if (!seen.has(k)) missing++;
    }
    if (k % 7 === 0 && putDurably(k + 100) && seen.has(k)) resurrected++;
  }
  t.ok(checked > 300, `checked ${checked} records`);
  t.equal(missing, 0, 'every record put before a completed flush survived');
  t.equal(resurrected, 0, 'durable removals stayed removed');
  t.equal(db.stats().totalFiles, seen.size, 'stats derived at open match the records');
  await db.close();
});
