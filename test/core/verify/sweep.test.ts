import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { Sweeper, STEP_ORDER } from '../../../src/core/verify/sweep.js';
import { HashPool } from '../../../src/core/hash/file-hash-pool.js';
import { QUARANTINE_DIR, classifyFolderEntry, orderForRehash, quarantineTarget, dayStamp, adoptionProblem } from '../../../src/core/verify/plan.js';
import { SNIFF_TYPES } from '../../../src/core/content/sniff.js';
import type { RpcEvent, SweepReport } from '../../../src/core/protocol/rpc.js';
import { TYPE_DIRS, MEDIA_TYPES } from '../../../src/core/types.js';
import { startOrigin, fixture, COLLISION_DIR, type Origin } from '../../helpers/origin.js';
import { waitFor } from '../../helpers/wait.js';

const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

/** Every file under the type folders, with its size and whether it hashes to its name. */
function filesOnDisk(cacheDir: string): Array<{ path: string; size: number; nameOk: boolean }> {
  const out: Array<{ path: string; size: number; nameOk: boolean }> = [];
  for (const type of MEDIA_TYPES) {
    const dir = path.join(cacheDir, TYPE_DIRS[type]);
    for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const p = path.join(dir, name);
      const buf = fs.readFileSync(p);
      out.push({ path: p, size: buf.length, nameOk: name.startsWith(md5(buf) + '.') });
    }
  }
  return out;
}

function quarantined(cacheDir: string): string[] {
  const root = path.join(cacheDir, QUARANTINE_DIR);
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root).flatMap((day) => fs.readdirSync(path.join(root, day)).map((n) => path.join(root, day, n)));
}

async function setup(t: Test, routes: Record<string, Buffer>): Promise<{ origin: Origin; cache: MediaCache; dir: string }> {
  const origin = await startOrigin();
  for (const [p, body] of Object.entries(routes)) origin.route(p, { body });
  let cache: MediaCache | undefined;
  // Registered before testdir(): teardowns run in order, and the index must
  // be flushed before its folder goes away.
  t.teardown(async () => {
    await origin.close();
    await cache?.close();
  });
  const dir = t.testdir({});
  cache = await MediaCache.open({ cacheDir: dir, retries: 0, timeoutMs: 5000 });
  return { origin, cache, dir };
}

t.test('pure plan helpers', async (t) => {
  const recs = [
    { md5: 'b'.repeat(32), verifiedAt: '2026-01-02T00:00:00Z' },
    { md5: 'a'.repeat(32), verifiedAt: '2026-01-02T00:00:00Z' },
    { md5: 'c'.repeat(32), verifiedAt: 'garbage' },
    { md5: 'd'.repeat(32), verifiedAt: '2025-12-31T00:00:00Z' },
  ];
  t.same(
    orderForRehash(recs).map((r) => r.md5[0]),
    ['c', 'd', 'a', 'b'],
    'never-verified first, then oldest, ties by md5',
  );
  const idx = new Map([['f'.repeat(32), { mediaType: 'image' as const, extension: '.png' }]]);
  const look = (m: string): { mediaType: 'image'; extension: string } | undefined => idx.get(m);
  t.equal(classifyFolderEntry('image', 'f'.repeat(32) + '.png', look).kind, 'indexed');
  t.match(classifyFolderEntry('image', 'f'.repeat(32) + '.jpg', look), { kind: 'junk', reason: /stray copy/ });
  t.match(classifyFolderEntry('image', 'notes.txt', look), { kind: 'junk', reason: /not named/ });
  t.match(classifyFolderEntry('image', 'e'.repeat(32) + '.mp4', look), { kind: 'junk', reason: /belongs in videos/ });
  t.match(classifyFolderEntry('image', 'e'.repeat(32) + '.xyz', look), { kind: 'junk', reason: /unknown extension/ });
  t.match(classifyFolderEntry('image', 'E'.repeat(32) + '.png', look), { kind: 'junk' }, 'uppercase md5 is not ours');
  const cand = classifyFolderEntry('audio', 'e'.repeat(32) + '.ogg', look);
  t.match(cand, { kind: 'candidate', md5: 'e'.repeat(32), ext: '.ogg' });
  if (cand.kind === 'candidate') {
    t.equal(adoptionProblem(cand, { md5: 'e'.repeat(32), size: 10 }, SNIFF_TYPES.ogg), undefined);
    t.match(adoptionProblem(cand, { md5: '0'.repeat(32), size: 10 }, SNIFF_TYPES.ogg), /hashes to/);
    t.match(adoptionProblem(cand, { md5: 'e'.repeat(32), size: 10 }, undefined), /not a supported/);
    t.match(adoptionProblem(cand, { md5: 'e'.repeat(32), size: 10 }, SNIFF_TYPES.opus), /not \.ogg/);
  }
  const when = new Date(2026, 2, 5, 23, 59);
  t.equal(dayStamp(when), '2026-03-05');
  const taken = new Set(['/c/.quarantine/2026-03-05/x.jpg', '/c/.quarantine/2026-03-05/x.jpg.1']);
  t.equal(quarantineTarget('/c', 'x.jpg', when, (p) => taken.has(p)), '/c/.quarantine/2026-03-05/x.jpg.2');
});

t.test('hash pool: md5+sha256 in threads, head, missing, throttle, cancel', async (t) => {
  const dir = t.testdir({});
  const f = path.join(dir, 'blob');
  const data = crypto.randomBytes(3_000_000);
  fs.writeFileSync(f, data);
  const pool = new HashPool({ threads: 2 });
  t.teardown(() => pool.close());
  const h = await pool.hash(f, { headBytes: 10 });
  t.equal(h?.md5, md5(data));
  t.equal(h?.sha256, crypto.createHash('sha256').update(data).digest('hex'));
  t.equal(h?.size, data.length);
  t.same(Buffer.from(h!.head!), data.subarray(0, 10));
  t.equal(await pool.hash(path.join(dir, 'nope')), undefined, 'missing file resolves undefined');
  await t.rejects(pool.hash(dir), { code: 'ENOTREG', name: 'NotRegularFileError' }, 'a directory is an error (not a regular file), not "missing"');

  // 2 x 3 MB shared at 10 MB/s across both threads: at least ~0.5 s (token bucket is pool-wide).
  pool.setRate(10);
  const t0 = Date.now();
  await Promise.all([pool.hash(f), pool.hash(f)]);
  const ms = Date.now() - t0;
  t.ok(ms >= 450, `6 MB at 10 MB/s took ${ms} ms`);
  t.ok(ms < 5000, `and not absurdly long (${ms} ms)`);

  pool.setRate(1);
  const slow = pool.hash(f);
  if (process.platform === 'linux') {
    // the hashing threads lowered their own priority (nice 10): downloads go first
    const niceOfThreads = (): number[] =>
      fs.readdirSync('/proc/self/task').map((tid) => {
        try {
          return Number(fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ')[16]);
        } catch {
          return 0;
        }
      });
    await waitFor(() => niceOfThreads().filter((n) => n === 10).length >= 1, { what: 'a hashing thread at nice 10' });
    t.ok(niceOfThreads().includes(10), 'a hashing thread runs at nice 10');
    t.ok(niceOfThreads().includes(0), 'the main thread keeps its priority');
  }
  setTimeout(() => pool.cancel(), 100);
  await t.rejects(slow, { code: 'E_ABORTED' });
  pool.setRate(0);
  t.equal((await pool.hash(f))?.md5, md5(data), 'usable after a cancel');
  const only = await pool.hashSha256(f, { headBytes: 4 });
  t.equal(only?.sha256, crypto.createHash('sha256').update(data).digest('hex'), 'SHA-256-only job');
  t.equal(only?.size, data.length);
  t.notOk(only && 'md5' in only, 'a SHA-256-only job computes no MD5');
  t.same(Buffer.from(only!.head!), data.subarray(0, 4));
  t.throws(() => new HashPool({ threads: 0 }), { code: 'E_BAD_REQUEST' });
  t.throws(() => pool.setRate(-1), { code: 'E_BAD_REQUEST' });
});

t.test('a sweep repairs, quarantines, adopts, cleans, and the stats agree with the disk', async (t) => {
  const jpg = fixture('sample.jpg');
  const png = fixture('sample.png');
  const gif = fixture('sample.gif');
  const pdf = fixture('sample.pdf');
  const { origin, cache, dir } = await setup(t, { '/a.jpg': jpg, '/b.png': png, '/c.gif': gif, '/d.pdf': pdf });
  const recA = await cache.download(origin.url('/a.jpg'));
  const recB = await cache.download(origin.url('/b.png'));
  await cache.download(origin.url('/c.gif'));
  await cache.download(origin.url('/d.pdf'));

  // damage: same-size corruption (only a hash finds it), and a deletion
  const bad = Buffer.from(jpg);
  bad[bad.length - 10] ^= 0xff;
  fs.writeFileSync(recA.localPath, bad);
  fs.rmSync(recB.localPath);
  // a valid orphan under its md5 name (the index never saw it)
  const webp = fixture('sample.webp');
  const orphan = path.join(dir, 'images', `${md5(webp)}.webp`);
  fs.writeFileSync(orphan, webp);
  // junk in a type folder: wrong name, wrong hash, wrong type
  fs.writeFileSync(path.join(dir, 'images', 'notes.txt'), 'hello');
  const wrongHash = path.join(dir, 'images', `${'0'.repeat(32)}.png`);
  fs.writeFileSync(wrongHash, png);
  const html = Buffer.from('<html>not media</html>');
  const wrongType = path.join(dir, 'images', `${md5(html)}.gif`);
  fs.writeFileSync(wrongType, html);
  // tmp leftovers: one stale, one fresh (a download in progress)
  const stale = path.join(dir, '.tmp', 'old.part');
  const fresh = path.join(dir, '.tmp', 'new.part');
  fs.writeFileSync(stale, 'x'.repeat(100));
  fs.writeFileSync(fresh, 'y');
  const twoDaysAgo = new Date(Date.now() - 48 * 3600_000);
  fs.utimesSync(stale, twoDaysAgo, twoDaysAgo);

  const events: RpcEvent[] = [];
  const sweeper = new Sweeper(cache, { progressIntervalMs: 0 });
  sweeper.on('event', (e: RpcEvent) => events.push(e));
  t.teardown(() => sweeper.close());
  const report = await sweeper.run();

  t.equal(report.complete, true);
  t.same(report.steps.map((s) => s.name), STEP_ORDER, 'named steps in order');
  for (const s of report.steps) t.ok(s.durationMs >= 0 && Number.isInteger(s.count) && Number.isInteger(s.bytes), `step ${s.name} has count/bytes/duration`);
  t.same(report.missing, [recB.md5]);
  t.same(report.corrupt, [recA.md5]);
  t.same(
    report.repaired.map((r) => r.md5).sort(),
    [recA.md5, recB.md5].sort(),
    'both repaired from the origin',
  );
  t.same(report.unrepaired, []);
  t.same(report.changedUpstream, []);
  t.same(report.adopted, [md5(webp)]);
  t.equal(report.cleanedTmp, 1);
  t.equal(report.checked >= 3, true, 'c, d and the orphan candidates were hashed');
  const step = (n: string): { count: number; bytes: number } => report.steps.find((s) => s.name === n)!;
  t.equal(step('missing').count, 1);
  t.equal(step('repair').count, 2);
  t.equal(step('repair').bytes, jpg.length + png.length);
  t.equal(step('adopt').count, 1);
  t.equal(step('quarantine').count, 4, 'the corrupt jpg + 3 junk files');
  t.equal(step('clean-tmp').count, 1);

  // the repaired files are the original bytes
  t.same(fs.readFileSync(recA.localPath), jpg);
  t.same(fs.readFileSync(recB.localPath), png);
  // quarantine keeps the bad copy and the junk, nothing deleted
  const q = quarantined(dir);
  const qByName = new Map(q.map((p) => [path.basename(p), p]));
  t.same(fs.readFileSync(qByName.get(path.basename(recA.localPath))!), bad, 'bad copy kept in quarantine');
  t.ok(qByName.has('notes.txt'));
  t.ok(qByName.has(path.basename(wrongHash)));
  t.ok(qByName.has(path.basename(wrongType)));
  t.match(report.quarantined.find((x) => x.path === wrongType)?.reason, /not a supported media type/);
  t.match(report.quarantined.find((x) => x.path === wrongHash)?.reason, /hashes to/);
  t.ok(q.every((p) => p.startsWith(path.join(dir, QUARANTINE_DIR, dayStamp(new Date())))), 'in today\'s folder');
  t.notOk(fs.existsSync(stale), 'stale tmp removed');
  t.ok(fs.existsSync(fresh), 'fresh tmp kept');

  // the orphan is a proper record: type, size, dimensions, sha256, no URLs
  const adopted = (await cache.find(md5(webp)));
  t.match(adopted, {
    mediaType: 'image',
    extension: '.webp',
    mimeType: 'image/webp',
    fileSize: webp.length,
    width: 50,
    height: 20,
    sha256: crypto.createHash('sha256').update(webp).digest('hex'),
    urls: [],
  });

  // stats agree with the files on disk, and every file hashes to its name
  const files = filesOnDisk(dir);
  t.ok(files.every((f) => f.nameOk), 'every file in the type folders hashes to its name');
  const stats = (await cache.stats());
  t.equal(stats.totalFiles, files.length);
  t.equal(stats.totalSize, files.reduce((a, f) => a + f.size, 0));

  // events: progress per step, then done with this report
  const steps = new Set(events.filter((e) => e.type === 'sweep.progress').map((e) => (e as { step: string }).step));
  t.same([...steps], STEP_ORDER, 'progress events for every step');
  const done = events.filter((e) => e.type === 'sweep.done');
  t.equal(done.length, 1);
  t.equal((done[0] as { report: SweepReport }).report.id, report.id);
  t.equal(sweeper.lastReport?.id, report.id);

  // verifiedAt moved forward for checked records; the report is durable in the index
  t.ok(Date.parse((await cache.find(recA.md5))!.verifiedAt) >= Date.parse(report.startedAt));

  // a second sweep finds nothing to do
  const again = await sweeper.run();
  t.not(again.id, report.id);
  t.same([again.missing, again.corrupt, again.adopted, again.quarantined, again.repaired], [[], [], [], [], []]);
  t.equal(again.checked, 5);
  t.equal(again.bytesHashed, files.reduce((a, f) => a + f.size, 0));
});

t.test('the re-hash catches an MD5-colliding twin swapped in on disk, and repairs it', async (t) => {
  // Same MD5 and size, different bytes: only the SHA-256 tells them apart.
  const good = fs.readFileSync(path.join(COLLISION_DIR, 'md5-1.jpg'));
  const twin = fs.readFileSync(path.join(COLLISION_DIR, 'md5-2.jpg'));
  t.equal(md5(good), md5(twin));
  t.equal(good.length, twin.length);
  const { origin, cache } = await setup(t, { '/good.jpg': good });
  const rec = await cache.download(origin.url('/good.jpg'));
  fs.writeFileSync(rec.localPath, twin);
  const sweeper = new Sweeper(cache);
  t.teardown(() => sweeper.close());
  const r = await sweeper.run();
  t.same(r.corrupt, [rec.md5], 'judged corrupt although its MD5 still matches its name');
  t.match(r.quarantined, [{ path: rec.localPath, reason: /sha256 differs \(the md5 still matches/ }]);
  t.match(r.repaired, [{ md5: rec.md5, url: origin.url('/good.jpg') }]);
  t.same(fs.readFileSync(rec.localPath), good, 'the original bytes are back');
  t.same(fs.readFileSync(r.quarantined[0].to), twin, 'the twin is kept in quarantine');

  // and a plain flipped byte is reported with what the file's MD5 is now
  const bad = Buffer.from(good);
  bad[bad.length - 3] ^= 0x01;
  fs.writeFileSync(rec.localPath, bad);
  const r2 = await sweeper.run();
  t.match(r2.quarantined, [{ reason: `md5 is now ${md5(bad)}` }]);
  t.same(fs.readFileSync(rec.localPath), good);
});

t.test('content changed upstream is reported, never stored under the old name', async (t) => {
  const jpg = fixture('sample.jpg');
  const png = fixture('sample.png');
  const mp3 = fixture('sample.mp3');
  const { origin, cache, dir } = await setup(t, { '/a.jpg': jpg, '/gone.png': png, '/grown.mp3': mp3, '/html.mp3': mp3 });
  const recA = await cache.download(origin.url('/a.jpg'));
  const recG = await cache.download(origin.url('/gone.png'));
  const recM = await cache.download(origin.url('/grown.mp3'));
  await cache.download(origin.url('/html.mp3'));
  // upstream now serves other (valid) media at a.jpg, and gone.png is 404;
  // the mp3 has two URLs: one serves a larger file now, the other an HTML page
  const other = fixture('sample.gif');
  origin.route('/a.jpg', { body: other });
  origin.route('/gone.png', { status: 404, body: 'nope' });
  origin.route('/grown.mp3', { body: Buffer.concat([mp3, mp3]) });
  origin.route('/html.mp3', { headers: { 'content-type': 'text/html' }, body: '<!doctype html><html><body>moved</body></html>' });
  fs.rmSync(recA.localPath);
  fs.rmSync(recM.localPath);
  fs.writeFileSync(recG.localPath, Buffer.alloc(png.length, 7)); // same size, wrong bytes

  const sweeper = new Sweeper(cache);
  t.teardown(() => sweeper.close());
  const report = await sweeper.run();
  // Repairs run side by side: the report lists them in the order they ended.
  t.same(
    [...report.changedUpstream].sort((x, y) => x.url.localeCompare(y.url)),
    [
      { md5: recA.md5, url: origin.url('/a.jpg') },
      { md5: recM.md5, url: origin.url('/grown.mp3') },
      { md5: recM.md5, url: origin.url('/html.mp3') },
    ],
    'each URL that changed is reported',
  );
  t.same(report.repaired, []);
  const un = new Map(report.unrepaired.map((u) => [u.md5, u.error]));
  t.equal(un.get(recA.md5)?.code, 'E_INTEGRITY');
  t.match(un.get(recA.md5)?.message, /changed upstream/);
  t.equal(un.get(recG.md5)?.code, 'E_HTTP');
  t.equal(un.get(recM.md5)?.code, 'E_INTEGRITY');
  t.notOk(fs.existsSync(recM.localPath));
  t.same(report.corrupt, [recG.md5]);
  t.notOk(fs.existsSync(recA.localPath), 'nothing under the old name');
  t.notOk(fs.existsSync(recG.localPath), 'the bad copy left the type folder');
  t.ok(filesOnDisk(dir).every((f) => f.nameOk), 'no file hashes to anything but its name');
  t.same(fs.readdirSync(path.join(dir, '.tmp')), [], 'the changed bytes were dropped from .tmp');
  // the record stays, so a later sweep retries; it is not served as present
  t.ok(cache.index.embedded!.get(recA.md5), 'record kept for a later retry');
  const again = await sweeper.run();
  t.same(again.missing.sort(), [recA.md5, recG.md5, recM.md5].sort(), 'still missing on the next sweep');
  const fresh = await cache.download(origin.url('/a.jpg'));
  t.equal(fresh.md5, md5(other), 'a download of the URL re-fetches instead of serving the missing file');
});

t.test('incremental sweeps resume oldest-first and cover every file', async (t) => {
  const base = fixture('sample.png');
  const routes: Record<string, Buffer> = {};
  const n = 10;
  for (let i = 0; i < n; i++) routes[`/p${i}.png`] = Buffer.concat([base, Buffer.from(`#${i}`.padEnd(20_000 - base.length, '.'))]);
  const { origin, cache } = await setup(t, routes);
  for (let i = 0; i < n; i++) await cache.download(origin.url(`/p${i}.png`));
  const before = new Map([...cache.index.embedded!.records()].map((r) => [r.md5, r.verifiedAt]));
  // 20 kB files at 0.1 MB/s: ~200 ms each; 500 ms per sweep -> two or so per run
  const sweeper = new Sweeper(cache, { rateMBps: 0.1, maxDurationMs: 500, threads: 1 });
  t.teardown(() => sweeper.close());
  const seen = new Set<string>();
  const perRun: string[][] = [];
  let runs = 0;
  let last = new Map(before);
  while (seen.size < n && runs < n + 1) {
    const r = await sweeper.run();
    runs++;
    // checked in this run = verifiedAt changed since the previous snapshot
    const checkedNow = [...cache.index.embedded!.records()].filter((x) => x.verifiedAt !== last.get(x.md5)).map((x) => x.md5);
    last = new Map([...cache.index.embedded!.records()].map((x) => [x.md5, x.verifiedAt]));
    perRun.push(checkedNow);
    for (const m of checkedNow) seen.add(m);
    if (runs === 1) t.equal(r.complete, false, 'the first run is cut short');
    t.ok(r.checked >= 1, `run ${runs} checked ${r.checked}`);
  }
  t.equal(seen.size, n, `all ${n} files re-checked over ${runs} runs`);
  t.ok(runs >= 2 && runs <= n, `took ${runs} runs`);
  t.same(new Set(perRun[1]).size, perRun[1].length);
  t.notOk(perRun[1].some((m) => perRun[0].includes(m)), 'the second run resumes with files the first did not check');
  for (const [m, v] of before) t.ok(cache.index.embedded!.get(m)!.verifiedAt > v, 'every verifiedAt moved forward');
});

t.test('two concurrent runs share one sweep; close stops a running one', async (t) => {
  const { origin, cache } = await setup(t, { '/a.jpg': fixture('sample.jpg') });
  await cache.download(origin.url('/a.jpg'));
  const sweeper = new Sweeper(cache);
  const p1 = sweeper.run();
  const s2 = sweeper.start();
  const p3 = sweeper.run();
  t.equal(sweeper.running, true);
  t.equal(s2.joined, true);
  t.equal(s2.id, sweeper.currentId);
  const [r1, r2, r3] = await Promise.all([p1, s2.done, p3]);
  t.equal(r1.id, r2.id);
  t.equal(r1.id, r3.id);
  t.equal(sweeper.running, false);
  const s4 = sweeper.start();
  t.equal(s4.joined, false, 'a run after the end is a new sweep');
  t.not((await s4.done).id, r1.id);

  // a slow sweep, closed mid-way: rejects E_ABORTED and further runs refuse
  const big = crypto.randomBytes(4_000_000);
  const f = path.join(cache.cacheDir, 'images', `${md5(big)}.png`);
  fs.writeFileSync(f, big);
  sweeper.setOptions({ rateMBps: 0.5 });
  const slow = sweeper.run();
  await new Promise((r) => setTimeout(r, 150));
  await sweeper.close();
  await t.rejects(slow, { code: 'E_ABORTED' });
  t.equal(sweeper.running, false);
  await t.rejects(sweeper.run(), { code: 'E_UNAVAILABLE' });
  t.throws(() => new Sweeper(cache, { threads: 0 }), { code: 'E_BAD_REQUEST' });
});

t.test('recovery run adopts every file back after the index is lost', async (t) => {
  const files = ['sample.jpg', 'sample.png', 'sample.mp3', 'sample.mp4', 'sample.pdf', 'sample.ogg'];
  const routes = Object.fromEntries(files.map((f) => [`/${f}`, fixture(f)]));
  const { origin, dir } = await setup(t, routes);
  const first = await MediaCache.open({ cacheDir: path.join(dir, 'c2'), retries: 0 });
  const recs = [];
  for (const f of files) recs.push(await first.download(origin.url(`/${f}`)));
  const statsBefore = await first.stats();
  await first.close();
  fs.rmSync(path.join(dir, 'c2', 'index'), { recursive: true });
  const cache = await MediaCache.open({ cacheDir: path.join(dir, 'c2'), retries: 0 });
  t.equal(cache.index.embedded!.size, 0);
  t.equal(cache.index.embedded!.needsRebuild, true, 'the index says it needs a rebuild');
  const sweeper = new Sweeper(cache, { maxDurationMs: 1 });
  t.teardown(() => sweeper.close());
  const r = await sweeper.run({ adopt: true });
  t.same(r.adopted.sort(), recs.map((x) => x.md5).sort());
  t.same((await cache.stats()), statsBefore, 'stats as before the loss');
  for (const rec of recs) {
    t.match((await cache.find(rec.md5)), { mediaType: rec.mediaType, extension: rec.extension, sha256: rec.sha256, fileSize: rec.fileSize });
  }
  t.match((await cache.find(recs[0].md5)), { width: 64, height: 48 });
  // an adopted record knows no URL: when its file goes, it cannot be repaired
  fs.rmSync(recs[1].localPath);
  const r2 = await sweeper.run();
  t.same(r2.missing, [recs[1].md5]);
  t.match(r2.unrepaired, [{ md5: recs[1].md5, error: { code: 'E_NOT_FOUND', message: /no URL/ } }]);
  await sweeper.close();
  await cache.close();
});
