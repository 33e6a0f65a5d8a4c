/**
 * End-to-end: the real mediacached repairs on its own schedule, and rebuilds
 * its index from the files on disk when the index is gone or damaged.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { startDaemon, type DaemonHandle } from '../helpers/daemon.js';
import { REPO_ROOT } from '../helpers/build.js';
import { startOrigin, fixture, type Origin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { IndexDb } from '../../src/core/entry-index/index-db.js';
import type { SweepReport } from '../../src/core/protocol/rpc.js';
import type { MediaRecord } from '../../src/core/types.js';

const FILES = ['sample.jpg', 'sample.png', 'sample.mp3', 'sample.pdf', 'sample.webm'];
const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

async function origin(t: Test): Promise<Origin> {
  const o = await startOrigin();
  for (const f of FILES) o.route(`/${f}`, { body: fixture(f) });
  t.teardown(() => o.close());
  return o;
}

async function addAll(d: DaemonHandle, o: Origin): Promise<MediaRecord[]> {
  const res = await d.rpc('add', { urls: FILES.map((f) => o.url(`/${f}`)), wait: true });
  const recs = res.items.map((i) => i.record);
  if (recs.some((r) => !r)) throw new Error(`add failed: ${JSON.stringify(res.items)}`);
  return recs as MediaRecord[];
}

function indexedTotal(recs: MediaRecord[]): { files: number; size: number } {
  return { files: recs.length, size: recs.reduce((a, r) => a + r.fileSize, 0) };
}

t.test('a daemon on "* * * * *" repairs a corrupted file by itself', async (t) => {
  const o = await origin(t);
  // First run: fetch the files, then stop, and damage one while no daemon runs.
  const first = await startDaemon(t);
  const [rec] = await addAll(first, o);
  t.equal((await first.stop()).code, 0);
  const good = fixture('sample.jpg');
  const bad = Buffer.from(good);
  bad[bad.length - 20] ^= 0x55; // same size: only a re-hash can see it
  fs.writeFileSync(rec.localPath, bad);

  // Second run on the same cache, with its wall clock skewed so that its next
  // whole minute is 4 s after it starts: the schedule fires as shipped
  // (cron, timer, sweep), without a real minute's wait, and the damage is
  // certainly there before the first scheduled sweep.
  const skew = pathToFileURL(path.join(REPO_ROOT, 'test', 'scripts', 'skew-clock.mjs')).href;
  const d = await startDaemon(t, {
    root: first.root,
    args: ['--sweep-schedule', '* * * * *'],
    env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${skew}`, MC_TEST_CLOCK_LEAD_MS: '4000' },
  });
  const c = await d.connect();
  await c.call('subscribe', { events: ['sweep.done'] });
  const status = await d.rpc('status', {});
  t.ok(status.nextSweepAt || status.lastSweep, 'status shows the next (or a just finished) sweep');

  await waitFor(() => fs.existsSync(rec.localPath) && md5(fs.readFileSync(rec.localPath)) === rec.md5, {
    timeoutMs: 60_000,
    intervalMs: 250,
    what: 'the scheduled sweep to restore the file',
  });
  t.same(fs.readFileSync(rec.localPath), good, 'original bytes back');
  const ev = await c.nextEvent((e) => e.type === 'sweep.done' && e.report.repaired.some((r) => r.md5 === rec.md5));
  const report = (ev as { report: SweepReport }).report;
  t.same(report.corrupt, [rec.md5]);
  t.equal(report.repaired[0].url, o.url('/sample.jpg'));
  const q = report.quarantined.find((x) => x.path === rec.localPath);
  t.ok(q, 'the bad copy was quarantined');
  t.same(fs.readFileSync(q!.to), bad, 'and kept');
  t.ok(q!.to.startsWith(path.join(d.cacheDir, '.quarantine') + path.sep));
  const after = await d.rpc('status', {});
  t.ok(after.lastSweep, 'status shows the last sweep');
  t.ok(Date.parse(after.nextSweepAt!) > Date.parse(after.lastSweep!.startedAt), 'next sweep is after the last one');
});

/** Run the real mcctl; resolves with exit code and output (never rejects on a non-zero exit). */
async function mcctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'bin', 'mcctl.js'), ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

t.test('mcctl sweep --wait repairs a deleted and a corrupted file on demand', async (t) => {
  const o = await origin(t);
  const d = await startDaemon(t);
  const recs = await addAll(d, o);
  fs.rmSync(recs[0].localPath);
  fs.writeFileSync(recs[2].localPath, Buffer.alloc(recs[2].fileSize));
  const r = await mcctl(['sweep', '--wait', '--json', '--socket', d.socket]);
  t.equal(r.code, 0, `exit 0 (${r.stderr})`);
  const res = JSON.parse(r.stdout) as { report: SweepReport; joined: boolean };
  t.equal(res.joined, false);
  t.same(res.report.missing, [recs[0].md5]);
  t.same(res.report.corrupt, [recs[2].md5]);
  t.same(res.report.repaired.map((x) => x.md5).sort(), [recs[0].md5, recs[2].md5].sort());
  t.same(res.report.steps.map((s) => s.name), ['missing', 'rehash', 'quarantine', 'repair', 'adopt', 'clean-tmp', 'metadata']);
  for (const rec of recs) t.equal(md5(fs.readFileSync(rec.localPath)), rec.md5, `${path.basename(rec.localPath)} intact`);
  // human output of a clean sweep
  const h = await mcctl(['sweep', '--wait', '--socket', d.socket]);
  t.equal(h.code, 0);
  t.match(h.stdout, /checked\s+5 files/);
  t.match(h.stdout, /repaired\s+0/);
  // a file that cannot be repaired: exit 1
  o.route('/sample.png', { status: 404, body: 'gone' });
  fs.rmSync(recs[1].localPath);
  const bad = await mcctl(['sweep', '--wait', '--json', '--socket', d.socket]);
  t.equal(bad.code, 1, 'exit 1 when something could not be repaired');
  t.match(JSON.parse(bad.stdout), { report: { unrepaired: [{ md5: recs[1].md5, error: { code: 'E_HTTP' } }] } });
});

t.test('index folder deleted: start-up adopts every file back', async (t) => {
  const o = await origin(t);
  const d = await startDaemon(t);
  const recs = await addAll(d, o);
  const before = await d.rpc('stats', {});
  t.same({ files: before.totalFiles, size: before.totalSize }, indexedTotal(recs));
  await d.stop();
  fs.rmSync(path.join(d.cacheDir, 'index'), { recursive: true, force: true });

  const d2 = await startDaemon(t, { root: d.root });
  const st = await waitFor(
    async () => {
      const s = await d2.rpc('stats', {});
      return s.totalFiles === recs.length ? s : undefined;
    },
    { timeoutMs: 30_000, what: 'stats to show every file again' },
  );
  t.equal(st.totalSize, before.totalSize);
  t.same(st.byType, before.byType);
  for (const r of recs) {
    const found = await d2.rpc('find', { md5: r.md5 });
    t.match(found, { md5: r.md5, sha256: r.sha256, mediaType: r.mediaType, extension: r.extension, fileSize: r.fileSize });
  }
});

t.test('a shard full of garbage: kept aside as *.corrupt-*, its files adopted back', async (t) => {
  const o = await origin(t);
  const d = await startDaemon(t);
  const recs = await addAll(d, o);
  await d.stop();
  // The daemon leaves a small journal at shutdown; fold it into the shards
  // (what a compaction does once the journal grows) so there is a shard to damage.
  const folded = await IndexDb.open(path.join(d.cacheDir, 'index'));
  await folded.close();
  t.notOk(fs.existsSync(path.join(d.cacheDir, 'index', 'journal.jsonl')), 'journal folded into the shards');
  const victim = recs[1];
  // The shard holding the victim: named after its md5's leading hex digits (format is the index's business).
  const recordsDir = path.join(d.cacheDir, 'index', 'records');
  const name = fs.readdirSync(recordsDir).find((n) => n.startsWith(`${victim.md5.slice(0, 2)}.`) && !n.includes('corrupt') && !n.startsWith('.'));
  t.ok(name, 'the shard file exists');
  const shard = path.join(recordsDir, name!);
  fs.writeFileSync(shard, '{"v":1,"records":[{"md5": garbage \u0000\u0001 \n{{{{\n');

  const d2 = await startDaemon(t, { root: d.root });
  await waitFor(
    async () => {
      const s = await d2.rpc('stats', {});
      return s.totalFiles === recs.length;
    },
    { timeoutMs: 30_000, what: 'stats to show every file again' },
  );
  const st = await d2.rpc('stats', {});
  t.same({ files: st.totalFiles, size: st.totalSize }, indexedTotal(recs));
  const aside = fs.readdirSync(path.dirname(shard)).filter((n) => n.startsWith(`${path.basename(shard)}.corrupt-`));
  t.equal(aside.length, 1, 'the damaged shard is kept aside');
  t.match(fs.readFileSync(path.join(path.dirname(shard), aside[0]), 'utf8'), /garbage/);
  t.match(await d2.rpc('find', { md5: victim.md5 }), { md5: victim.md5, sha256: victim.sha256 });
});
