// Sweep benchmark.
//
//   node bench/sweep.js [--files 64] [--file-mib 16] [--runs 2] [--rate 50]
//                       [--dl-files 4] [--dl-mib 64] [--dl-runs 3] [--sets rehash,downloads]
//
// 1. rehash: builds a cache of --files x --file-mib MiB (default 1 GiB) by
//    writing `{md5}.pdf` files and letting a sweep adopt them, then times a
//    full re-hash by the Sweeper (2 worker threads; each file's SHA-256 is
//    checked against its record, which proves the MD5 name too) against
//    `md5sum` (MD5 only, one process) over the same files, each run --runs
//    times (best kept; files are in the page cache for both). Target: the
//    sweep takes <= 0.7x md5sum's time. Also printed: both digests of every
//    file through the same pool, the cost when MD5 is computed as well.
// 2. downloads: throughput of MediaCache downloads from a loopback origin in a
//    child process (bench/origin.js), alone and while a sweep throttled to
//    --rate MB/s re-hashes the cache above. Target: >= 80% of the speed.
//
// Needs `npm run build` first (imports ../dist). Temp data is removed at the end.
import { spawn, execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseArgs, numberArg } from './_args.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;

const args = parseArgs(process.argv.slice(2));
const num = (k, d) => numberArg(args, k, d);
const FILES = num('files', 64);
const FILE_MIB = num('file-mib', 16);
const RUNS = Math.max(1, num('runs', 2));
const RATE = num('rate', 50);
const DL_FILES = num('dl-files', 4);
const DL_MIB = num('dl-mib', 64);
const DL_RUNS = Math.max(1, num('dl-runs', 3));
const SETS = String(args.sets ?? 'rehash,downloads').split(',');

const { MediaCache } = await import('../dist/core/cache/media-cache.js');
const { Sweeper } = await import('../dist/core/verify/sweep.js');
const { HashPool } = await import('../dist/core/hash/file-hash-pool.js');

const fmt = (ms) => `${(ms / 1000).toFixed(2)} s`;
const mbps = (bytes, ms) => (bytes / 1e6 / (ms / 1000)).toFixed(1);

/** A PDF-looking file (so sniffing accepts it) of `size` bytes, unique per `seed`. */
function makeBody(base, seed) {
  const head = Buffer.from(`%PDF-1.7\n% bench ${seed} ${crypto.randomBytes(8).toString('hex')}\n`);
  const buf = Buffer.from(base);
  head.copy(buf, 0);
  return buf;
}

async function writeCacheFiles(dir, count, size) {
  const docs = path.join(dir, 'documents');
  fs.mkdirSync(docs, { recursive: true });
  const base = crypto.randomBytes(size);
  const paths = [];
  for (let i = 0; i < count; i++) {
    const body = makeBody(base, i);
    const md5 = crypto.createHash('md5').update(body).digest('hex');
    const p = path.join(docs, `${md5}.pdf`);
    fs.writeFileSync(p, body);
    paths.push(p);
  }
  return paths;
}

/** Wall time of `md5sum` over the files, and its CPU time (user+sys, from the shell's `times`). */
async function timeMd5sum(paths) {
  const t0 = performance.now();
  const { stdout } = await promisify(execFile)('sh', ['-c', 'md5sum "$@" > /dev/null && times', 'sh', ...paths], { maxBuffer: 64 * MiB });
  const ms = performance.now() - t0;
  const secs = (s) => {
    const m = /(\d+)m([\d.]+)s/.exec(s);
    return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
  };
  const children = stdout.trim().split('\n').pop().trim().split(/\s+/);
  return { ms, cpuMs: (secs(children[0]) + secs(children[1])) * 1000 };
}

/** CPU time of this process (all threads, so the hash workers too), ms. */
function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function startOrigin(dir) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(HERE, 'origin.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (line) => resolve({ child, port: JSON.parse(line).port }));
    child.once('error', reject);
    child.once('exit', (c) => reject(new Error(`origin exited ${c}`)));
  });
}

async function downloadAll(cacheDir, urls) {
  const cache = await MediaCache.open({ cacheDir, concurrency: 2, timeoutMs: 120_000 });
  try {
    const t0 = performance.now();
    const recs = await cache.downloadMany(urls, { maxWorkers: 2, force: true });
    const ms = performance.now() - t0;
    if (recs.length !== urls.length) throw new Error(`only ${recs.length}/${urls.length} downloads succeeded`);
    return { ms, bytes: recs.reduce((a, r) => a + r.fileSize, 0) };
  } finally {
    await cache.close();
  }
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-bench-sweep-'));
const cacheDir = path.join(root, 'cache');
let origin;
try {
  console.log(`load average before: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (other work on the machine skews wall times)`);
  console.log(`cache: ${FILES} x ${FILE_MIB} MiB = ${((FILES * FILE_MIB) / 1024).toFixed(2)} GiB in ${root}; cpus ${os.cpus().length}`);
  const t0 = performance.now();
  const paths = await writeCacheFiles(cacheDir, FILES, FILE_MIB * MiB);
  const totalBytes = FILES * FILE_MIB * MiB;
  console.log(`wrote files in ${fmt(performance.now() - t0)}`);

  const cache = await MediaCache.open({ cacheDir });
  const adoptRun = await new Sweeper(cache, { threads: 2 }).run({ adopt: true });
  console.log(`adopt sweep: ${adoptRun.adopted.length} adopted, ${fmt(adoptRun.durationMs)} (${mbps(adoptRun.bytesHashed, adoptRun.durationMs)} MB/s)`);
  if (adoptRun.adopted.length !== FILES) throw new Error('not every file was adopted');

  if (SETS.includes('rehash')) {
    let bestSweep = Infinity;
    let bestRehashStep = Infinity;
    let bestMd5sum = Infinity;
    let bestFull = Infinity;
    let sweepCpu = Infinity;
    let fullCpu = Infinity;
    let md5sumCpu = Infinity;
    for (let r = 0; r < RUNS; r++) {
      // Same priority as md5sum: this measures hashing speed, not politeness.
      const sweeper = new Sweeper(cache, { threads: 2, rateMBps: 0, niceness: 0 });
      const c0 = cpuMs();
      const rep = await sweeper.run();
      sweepCpu = Math.min(sweepCpu, cpuMs() - c0);
      if (rep.checked !== FILES || rep.corrupt.length) throw new Error(`sweep checked ${rep.checked}, corrupt ${rep.corrupt.length}`);
      const step = rep.steps.find((s) => s.name === 'rehash');
      bestSweep = Math.min(bestSweep, rep.durationMs);
      bestRehashStep = Math.min(bestRehashStep, step.durationMs);
      // For comparison: both digests of every file (what adoption and the
      // downloads compute), through the same pool, 2 threads.
      const pool = new HashPool({ threads: 2, niceness: 0 });
      pool.warm();
      const f0 = performance.now();
      const fc0 = cpuMs();
      await Promise.all(paths.map((p) => pool.hash(p)));
      const fullMs = performance.now() - f0;
      fullCpu = Math.min(fullCpu, cpuMs() - fc0);
      bestFull = Math.min(bestFull, fullMs);
      await pool.close();
      const m = await timeMd5sum(paths);
      bestMd5sum = Math.min(bestMd5sum, m.ms);
      md5sumCpu = Math.min(md5sumCpu, m.cpuMs);
      console.log(
        `run ${r + 1}: sweep ${fmt(rep.durationMs)} (rehash step ${fmt(step.durationMs)}), full md5+sha256 ${fmt(fullMs)}, md5sum ${fmt(m.ms)}; ` +
          `load average ${os.loadavg()[0].toFixed(1)}`,
      );
    }
    console.log(`CPU time: sweep ${fmt(sweepCpu)} (sha256 vs record), full ${fmt(fullCpu)} (md5+sha256), md5sum ${fmt(md5sumCpu)} (md5 only)`);
    console.log(
      `REHASH best of ${RUNS}: sweep (SHA-256 checked against the record, 2 threads) ${fmt(bestSweep)} = ${mbps(totalBytes, bestSweep)} MB/s; ` +
        `md5sum ${fmt(bestMd5sum)} = ${mbps(totalBytes, bestMd5sum)} MB/s; ratio sweep/md5sum = ${(bestSweep / bestMd5sum).toFixed(2)}x ` +
        `(rehash step alone ${(bestRehashStep / bestMd5sum).toFixed(2)}x; target <= 0.70x)`,
    );
    console.log(
      `      full MD5 + SHA-256 of the same files (2 threads): ${fmt(bestFull)} = ${mbps(totalBytes, bestFull)} MB/s; ` +
        `ratio ${(bestFull / bestMd5sum).toFixed(2)}x md5sum`,
    );
  }

  if (SETS.includes('downloads')) {
    const originDir = path.join(root, 'origin');
    fs.mkdirSync(originDir);
    const base = crypto.randomBytes(DL_MIB * MiB);
    for (let i = 0; i < DL_FILES; i++) fs.writeFileSync(path.join(originDir, `f${i}.pdf`), makeBody(base, `dl${i}`));
    origin = await startOrigin(originDir);
    const urls = Array.from({ length: DL_FILES }, (_, i) => `http://127.0.0.1:${origin.port}/f${i}.pdf`);
    await downloadAll(path.join(root, 'dl-warm'), urls); // warm the page cache and the JIT
    let alone = { ms: Infinity, bytes: 0 };
    let withSweep = { ms: Infinity, bytes: 0 };
    for (let r = 0; r < DL_RUNS; r++) {
      const a = await downloadAll(path.join(root, `dl-a${r}`), urls);
      if (a.ms < alone.ms) alone = a;
      const sweeper = new Sweeper(cache, { threads: 2, rateMBps: RATE });
      const sweep = sweeper.run();
      // Let the sweep reach its rehash step before the downloads start.
      await new Promise((res) => setTimeout(res, 300));
      const w = await downloadAll(path.join(root, `dl-w${r}`), urls);
      const stillRunning = sweeper.running;
      await sweeper.close();
      await sweep.catch(() => undefined);
      if (!stillRunning) console.log('warning: the sweep ended before the downloads did; raise --files or lower --rate');
      if (w.ms < withSweep.ms) withSweep = w;
      console.log(`run ${r + 1}: downloads alone ${mbps(a.bytes, a.ms)} MB/s, during a ${RATE} MB/s sweep ${mbps(w.bytes, w.ms)} MB/s`);
      for (const d of [`dl-a${r}`, `dl-w${r}`]) fs.rmSync(path.join(root, d), { recursive: true, force: true });
    }
    const ra = alone.bytes / alone.ms;
    const rw = withSweep.bytes / withSweep.ms;
    console.log(
      `DOWNLOADS best of ${DL_RUNS} (${DL_FILES} x ${DL_MIB} MiB, 2 at a time): alone ${mbps(alone.bytes, alone.ms)} MB/s, ` +
        `during sweep at ${RATE} MB/s ${mbps(withSweep.bytes, withSweep.ms)} MB/s; ratio ${((rw / ra) * 100).toFixed(0)}% (target >= 80%)`,
    );
  }
  await cache.close();
} finally {
  origin?.child.kill('SIGTERM');
  fs.rmSync(root, { recursive: true, force: true });
}
