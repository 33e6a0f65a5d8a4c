import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IndexDb } from '../src/core/index-db.js';
import { MediaCacheError } from '../src/core/errors.js';
import type { StoredRecord } from '../src/core/types.js';
import { waitFor } from './helpers/wait.js';

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

/**
 * Records on disk, read straight from the shard files (not through IndexDb):
 * JSON lines, a header naming the columns, then one array per record.
 */
function onDisk(dir: string): Map<string, StoredRecord> {
  const out = new Map<string, StoredRecord>();
  for (const f of readdirSync(join(dir, 'records'))) {
    if (!/^[0-9a-f]{2}\.jsonl$/.test(f)) continue;
    const lines = readFileSync(join(dir, 'records', f), 'utf8').split('\n');
    const header = JSON.parse(lines[0]) as { v: number; columns: string[] };
    if (header.v !== 1) throw new Error(`bad header in ${f}`);
    for (const line of lines.slice(1)) {
      if (line === '') continue;
      const row = JSON.parse(line) as unknown[];
      const r: Record<string, unknown> = {};
      header.columns.forEach((c, k) => {
        if (row[k] !== null && row[k] !== undefined) r[c] = row[k];
      });
      out.set(r.md5 as string, r as unknown as StoredRecord);
    }
  }
  return out;
}

const COLUMNS = ['md5', 'sha256', 'fileSize', 'mimeType', 'mediaType', 'extension', 'width', 'height', 'urls', 'fetchedAt', 'verifiedAt', 'etag', 'lastModified'];

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

t.test('writes are coalesced: many puts, each dirty shard written once', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir, { flushDelayMs: 100 });
  const base = db.diagnostics.shardWrites;
  const recs = Array.from({ length: 100 }, (_, i) => rec(`c${i}`));
  for (const r of recs) db.put(r);
  const dirtyShards = new Set(recs.map((r) => r.md5.slice(0, 2)));
  t.equal(db.diagnostics.shardWrites, base, 'nothing written synchronously');
  await waitFor(() => db.diagnostics.shardWrites - base >= dirtyShards.size, { what: 'coalesced flush' });
  t.equal(db.diagnostics.shardWrites - base, dirtyShards.size, 'one write per dirty shard');
  t.equal(onDisk(dir).size, 100);
  const shardFiles = readdirSync(join(dir, 'records')).filter((f) => f.endsWith('.jsonl'));
  t.same(new Set(shardFiles.map((f) => f.slice(0, 2))), dirtyShards, 'only dirty shards exist as files');

  // A forced flush with nothing dirty writes nothing.
  await db.flush();
  t.equal(db.diagnostics.shardWrites - base, dirtyShards.size);

  // flush() forces an immediate write and resolves once the data is on disk.
  const late = rec('late');
  db.put(late);
  await db.flush();
  t.same(onDisk(dir).get(late.md5), late);
  t.equal(db.diagnostics.shardWrites - base, dirtyShards.size + 1);
  await db.close();
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
  t.equal(meta.schemaVersion, 1);
  await again.close();
});

t.test('a garbage shard is moved aside and reported; the others load', async (t) => {
  const dir = t.testdir();
  const db = await IndexDb.open(dir);
  const recs = Array.from({ length: 50 }, (_, i) => rec(`g${i}`));
  for (const r of recs) db.put(r);
  await db.close();

  const victim = recs[0].md5.slice(0, 2);
  const lost = recs.filter((r) => r.md5.startsWith(victim));
  writeFileSync(join(dir, 'records', `${victim}.jsonl`), readFileSync(join(dir, 'records', `${victim}.jsonl`), 'utf8').slice(0, -20));
  // A shard that parses but has the wrong shape counts as damaged too.
  const other = recs.find((r) => !r.md5.startsWith(victim))!;
  const shaped = other.md5.slice(0, 2);
  const lost2 = recs.filter((r) => r.md5.startsWith(shaped));
  writeShard(dir, shaped, [{ md5: 'nope' } as unknown as StoredRecord]);

  const again = await IndexDb.open(dir, { now: () => new Date('2026-03-04T05:06:07.089Z') });
  t.equal(again.recovered.length, 2);
  t.ok(again.needsRebuild);
  t.ok(again.recovered.includes(join(dir, 'records', `${victim}.jsonl.corrupt-2026-03-04T050607.089Z`)));
  for (const f of again.recovered) t.ok(existsSync(f), `${f} kept for inspection`);
  t.equal(again.size, 50 - lost.length - lost2.length);
  for (const r of lost) t.equal(again.get(r.md5), undefined);
  for (const r of recs.filter((r) => !lost.includes(r) && !lost2.includes(r))) t.same(again.get(r.md5), r);
  t.equal(again.md5ForUrl(lost[0].urls[0]), undefined);

  // The index keeps working: a new record in the damaged shard is written fresh.
  again.put(lost[0]);
  await again.flush();
  t.same(onDisk(dir).get(lost[0].md5), lost[0]);
  await again.close();
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
  t.equal(JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')).schemaVersion, 1, 'meta rewritten');
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
  t.same(onDisk(dir).get(older.md5)!.urls, [], 'loser rewritten at open');
  await again.close();
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
  const dir = t.testdir();
  const db = await IndexDb.open(dir, { flushDelayMs: 10 });
  const a = rec('fail-a');
  db.put(a);
  await db.flush();
  // Make every shard write fail: records/ becomes a regular file (ENOTDIR).
  rmSync(join(dir, 'records'), { recursive: true });
  writeFileSync(join(dir, 'records'), 'not a dir');
  const b = rec('fail-b');
  db.put(b);
  await t.rejects(db.flush(), { name: 'MediaCacheError' }, 'flush reports the failure');
  t.same(db.get(b.md5), b, 'memory still has the record');
  // The disk comes back: the scheduled retry (>= 1 s backoff) writes the dirty shard.
  rmSync(join(dir, 'records'));
  mkdirSync(join(dir, 'records'));
  await waitFor(() => onDisk(dir).has(b.md5), { timeoutMs: 15_000, what: 'retried write' });
  t.same(onDisk(dir).get(b.md5), b);
  await db.close();
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

t.test('crash safety: SIGKILL during continuous flushes leaves a valid, consistent index', async (t) => {
  const dir = join(t.testdir(), 'idx');
  const child = fileURLToPath(new URL('./scripts/index-crash-child.ts', import.meta.url));
  let lastDurable = -1;
  // What each life put durably: records start..durable (records between a
  // life's last durable flush and the next life's start may or may not exist).
  const lives: { start: number; durable: number }[] = [];
  // Two lives: the second child reopens what the first left and goes on.
  for (let life = 0; life < 2; life++) {
    // Run the child through the TypeScript loader tap gave this process (only
    // that one: coverage instrumentation would triple the child's start-up).
    const tsLoader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const proc = spawn(process.execPath, [...tsLoader, child, dir, '40'], { stdio: ['ignore', 'ignore', 'pipe'], env });
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
    t.equal(proc.exitCode, null, `child ${life} still running (stderr: ${errText.slice(-500)})`);
    proc.kill('SIGKILL'); // lands wherever the child is: mid-batch, mid-write, mid-rename
    await exited;
    t.ok(durable > lastDurable, `life ${life} made progress (durable ${durable})`);
    lastDurable = durable;
    lives.push({ start, durable });
  }
  const putDurably = (k: number): boolean => lives.some((l) => k >= l.start && k <= l.durable);

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
