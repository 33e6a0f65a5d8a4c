/**
 * Acceptance: 50 random SIGKILLs of the real daemon under load, then a clean
 * run to the end. Afterwards index, job store, reports and disk agree:
 * - every input URL (inbox files, and `mcctl add -f` calls the client saw
 *   succeed) ended done (with the md5 of what the origin serves) or failed
 *   with the reason the origin gives (E_HTTP, E_UNSUPPORTED_TYPE); none is
 *   silently missing, none still queued;
 * - every inbox file is in processed/ with a complete report;
 * - every file under a final name hashes to its name, has an index record,
 *   and every record's file is there (the index answers `find` for every
 *   done URL with the right md5); nothing was quarantined, .tmp/ empties.
 *
 * The lives are short so the kills land in start-up, recovery, intake,
 * downloads and index/job-store writes: about a third are killed at a random
 * point of start-up (scaled by how long start-ups take on this machine), the
 * rest 0-0.8 s after the daemon logs `ready`. Wall time is about 50 start-ups
 * of the daemon (~1 s each on an idle 2-core machine); on a heavily loaded
 * one it can be several times that, hence the longer timeout. The sequence
 * is seeded; the seed is printed (CRASH_SEED=… replays it).
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { daemonEnv, makeRoot, spawnDaemon, startDaemon, type SpawnedDaemon } from '../helpers/daemon.js';
import { ensureBuilt, REPO_ROOT } from '../helpers/build.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { parseReport } from '../../src/daemon/inbox/report.js';
import { TYPE_DIRS } from '../../src/core/types.js';

const KILLS = 50;
t.setTimeout(600_000);
const PNG = fixture('sample.png');
const GIF = fixture('sample.gif');
const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

/** mulberry32: a small seeded PRNG, so a failing sequence can be replayed (CRASH_SEED=…). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

type Expect = { outcome: 'done'; md5: string } | { outcome: 'failed'; code: string };

function filesUnder(cacheDir: string): string[] {
  return Object.values(TYPE_DIRS).flatMap((d) => {
    const p = path.join(cacheDir, d);
    return fs.existsSync(p) ? fs.readdirSync(p).map((n) => path.join(p, n)) : [];
  });
}

/** Run mcctl; resolves with its exit code (never rejects). */
function mcctl(args: string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'mcctl.js'), ...args], { env, stdio: ['ignore', 'ignore', 'ignore'] });
    p.on('exit', (code) => resolve(code));
    p.on('error', () => resolve(null));
  });
}

t.test(`${KILLS} random SIGKILLs under load: index, job store, reports and disk agree`, async (t) => {
  await ensureBuilt();
  const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
  t.comment(`seed ${seed}`);
  const rnd = prng(seed);
  const t0 = Date.now();

  // The origin: distinct small PNGs/GIFs, a few shared bodies (dedup), slow
  // ones (a kill lands mid-download), 404s and garbage (failed with a reason).
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const expect = new Map<string, Expect>();
  const urls: string[] = [];
  const N = 180;
  for (let i = 0; i < N; i++) {
    const kind = i % 12;
    const p = `/u${i}`;
    let body: Buffer | undefined;
    if (kind === 5) {
      origin.route(p, { status: 404, body: 'gone' });
      expect.set(origin.url(p), { outcome: 'failed', code: 'E_HTTP' });
    } else if (kind === 7) {
      origin.route(p, { body: '<html>not media</html>' });
      expect.set(origin.url(p), { outcome: 'failed', code: 'E_UNSUPPORTED_TYPE' });
    } else {
      // Every 9th shares its body with the one before (two URLs, one file).
      const n = i % 9 === 0 && i > 0 ? i - 1 : i;
      body = Buffer.concat([kind % 2 ? GIF : PNG, Buffer.from(`-${n}`)]);
      if (kind === 3) body = Buffer.concat([body, Buffer.alloc(90_000, i & 255)]);
      origin.route(p, kind === 3 ? { body, bytesPerSec: 120_000 } : { body });
      expect.set(origin.url(p), { outcome: 'done', md5: md5(body) });
    }
    urls.push(origin.url(p));
  }

  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const cacheDir = path.join(root, 'cache');
  const inbox = path.join(root, 'inbox');
  const socket = path.join(root, 'd.sock');
  fs.mkdirSync(inbox, { recursive: true });
  const args = ['--cache-dir', cacheDir, '--socket', socket, '--inbox', inbox, '--log-level', 'info', '--concurrency', '4', '--timeout', '5000', '--grace', '1000'];
  const env = daemonEnv(root);

  // The work: four inbox files and four `mcctl add -f` lists, fed at different lives.
  const slices = Array.from({ length: 8 }, (_, k) => urls.slice((k * N) / 8, ((k + 1) * N) / 8));
  const inboxAt = new Map([[0, 0], [9, 2], [21, 4], [33, 6]]);
  const mcctlAt = new Map([[4, 1], [14, 3], [27, 5], [40, 7]]);
  const inboxUrls: string[] = [];
  const ackedUrls: string[] = [];
  const pendingMcctl: string[][] = [];

  /** Running average of spawn-to-ready, to place the start-up kills. */
  let startupMs = 1000;
  const readyLine = / info ready /;
  let current: SpawnedDaemon | undefined;
  t.teardown(async () => {
    if (current && !current.exitStatus()) {
      current.proc.kill('SIGKILL');
      await current.exited;
    }
  });
  for (let life = 0; life < KILLS; life++) {
    const file = inboxAt.get(life);
    if (file !== undefined) {
      // Written in place while the daemon is dead or starting: taken once stable.
      fs.writeFileSync(path.join(inbox, `batch${life}.urls`), slices[file].join('\n') + '\n');
      inboxUrls.push(...slices[file]);
    }
    const sp = spawnDaemon(args, env);
    const spawnedAt = Date.now();
    current = sp;
    const list = mcctlAt.get(life);
    if (list !== undefined) pendingMcctl.push(slices[list]);
    if (pendingMcctl.length > 0 || rnd() < 0.65) {
      // A life that reaches the serving state: feed what is due, then kill during the work.
      await waitFor(() => readyLine.test(sp.stderr()) || sp.exitStatus(), { timeoutMs: 120_000, intervalMs: 10, what: `life ${life}: ready` });
      if (sp.exitStatus()) t.fail(`life ${life}: the daemon exited by itself`, { stderr: sp.stderr() });
      startupMs = 0.7 * startupMs + 0.3 * (Date.now() - spawnedAt);
      while (pendingMcctl.length > 0) {
        const urlsFile = path.join(root, `add${life}-${pendingMcctl.length}.txt`);
        const batch = pendingMcctl.shift()!;
        fs.writeFileSync(urlsFile, batch.join('\n') + '\n');
        // Acknowledged: durably queued (add returns after the jobs are on disk).
        if ((await mcctl(['add', '-f', urlsFile, '--socket', socket], env)) === 0) ackedUrls.push(...batch);
        else pendingMcctl.unshift(batch);
      }
      await new Promise((r) => setTimeout(r, rnd() * 800));
    } else {
      // A kill somewhere in start-up: recovery, replay, intake, the first downloads.
      await new Promise((r) => setTimeout(r, rnd() * startupMs * 1.2));
    }
    sp.proc.kill('SIGKILL');
    await sp.exited;
    if (process.env.CRASH_TRACE) t.comment(`life ${life} ended at ${Date.now() - t0} ms`);
  }
  t.equal(pendingMcctl.length, 0, 'every mcctl add was acknowledged in some life');
  t.comment(`${KILLS} kills in ${Date.now() - t0} ms`);

  // The last life runs to the end.
  const d = await startDaemon(t, { root, cacheDir, socket, inboxes: [inbox], args: ['--concurrency', '4', '--timeout', '5000'] });
  const allInput = [...new Set([...inboxUrls, ...ackedUrls])];
  await waitFor(
    async () => {
      const st = await d.rpc('status', {});
      if (st.queue.queued + st.queue.running > 0) return false;
      return [...inboxAt.keys()].every((life) => fs.existsSync(path.join(inbox, 'processed', `batch${life}.urls.report.tsv`)));
    },
    { timeoutMs: 60_000, intervalMs: 100, what: 'every job ended and every report written' },
  );

  // Every disagreement is collected (not just the first) and reported with its details.
  const problems: string[] = [];
  // Reports: one row per line, each done with the right md5 or failed with the right code.
  for (const life of inboxAt.keys()) {
    const rows = parseReport(fs.readFileSync(path.join(inbox, 'processed', `batch${life}.urls.report.tsv`), 'utf8'));
    const lines = slices[inboxAt.get(life)!];
    t.equal(rows.length, lines.length, `batch${life}: a row per line`);
    for (const r of rows) {
      const want = expect.get(r.url);
      const ok = want && r.outcome === want.outcome && r.result === (want.outcome === 'done' ? want.md5 : want.code);
      if (!ok) problems.push(`report batch${life} line ${r.line}: ${r.url} ${r.outcome} ${r.result}, want ${JSON.stringify(want)}`);
    }
  }
  // Job store: every acknowledged URL has ended jobs only, the last one as expected.
  const { jobs } = await d.rpc('jobs', { limit: 100_000 });
  for (const u of allInput) {
    const mine = jobs.filter((j) => j.url === u).sort((a, b) => Number(a.id.slice(1)) - Number(b.id.slice(1)));
    const want = expect.get(u)!;
    const last = mine.at(-1);
    const ok =
      last !== undefined &&
      mine.every((j) => j.state === 'done' || j.state === 'failed') &&
      last.state === want.outcome &&
      (want.outcome === 'done' ? last.md5 === want.md5 : last.error?.code === want.code);
    if (!ok) problems.push(`jobs of ${u}: ${JSON.stringify(mine.map((j) => [j.id, j.state, j.md5 ?? j.error?.code]))}, want ${JSON.stringify(want)}`);
  }
  // Index and disk: every done URL found with its md5 and its file; every file hashes to its name and is indexed.
  const doneMd5s = new Set<string>();
  for (const u of allInput) {
    const want = expect.get(u)!;
    if (want.outcome !== 'done') continue;
    doneMd5s.add(want.md5);
    const rec = await d.rpc('find', { url: u }).catch((e: unknown) => e as Error);
    if (rec instanceof Error) problems.push(`index: ${u} not found (${rec.message}); its md5 ${want.md5} is ${(await d.rpc('find', { md5: want.md5 }).catch(() => undefined)) ? 'indexed under other URLs' : 'not indexed'}`);
    else if (rec.md5 !== want.md5) problems.push(`index: ${u} names ${rec.md5}, want ${want.md5}`);
    else if (!fs.existsSync(rec.localPath)) problems.push(`index: the file of ${u} is missing`);
  }
  const files = filesUnder(cacheDir);
  for (const f of files) {
    const m = md5(fs.readFileSync(f));
    if (m !== path.basename(f, path.extname(f))) problems.push(`disk: ${f} does not hash to its name`);
    else if (!doneMd5s.has(m)) problems.push(`disk: ${f} is no input URL's content`);
  }
  t.same(problems, [], 'index, job store, reports and disk agree');
  const stats = await d.rpc('stats', {});
  t.equal(files.length, doneMd5s.size, 'one file per distinct content');
  t.equal(stats.totalFiles, files.length, 'the index counts exactly the files on disk');
  t.notOk(fs.existsSync(path.join(cacheDir, '.quarantine')), 'nothing quarantined');
  const st = await d.rpc('status', {});
  t.equal(st.damage, undefined, 'a kill -9 damages no index or job-store file');
  await waitFor(() => fs.readdirSync(path.join(cacheDir, '.tmp')).length === 0, { what: '.tmp/ empty' });
  t.equal((await d.stop()).code, 0);
  t.comment(`total ${Date.now() - t0} ms`);
});
