// Download benchmark: mediacache (the library's downloadMany, and the daemon
// fed by `mcctl add -f URLS --wait`) beside the tools a user would pick
// instead, over the same loopback URLs, for many small images and a few
// large videos.
//
//   npm run bench -- [--small-count 2000] [--large-count 4] [--large-mib 256]
//                    [--small-workers 16] [--large-workers 4] [--sets small,large] [--runs 3]
//                    [--no-daemon] [--no-curl] [--no-curl-sync] [--no-curl-hash] [--no-wget]
//                    [--no-aria2] [--no-seed] [--no-bare-node] [--profile DIR] [--json]
//                    [--quota-half]
//
// --quota-half: for the small set, also run the library with --max-size set
// to half the set's bytes (eviction keeps up with the downloads) as one more
// side; prints its time ratio to the library without a quota (target <= 1.2x).
//
// Sides (each in its own process; CPU seconds and peak RSS of each):
// - library: MediaCache.downloadMany in a child process (open → downloads → close);
// - daemon (--no-daemon): mediacached started untimed on a fresh cache with
//   --concurrency/--per-host = the set's workers, then `mcctl add -f URLS
//   --wait` timed from mcctl's start to its exit (its start-up included); CPU
//   is the daemon's over that window plus mcctl's; RSS the daemon's VmHWM;
// - curl -Z; curl then `sync -f` of its folder (--no-curl-sync); for the large
//   set, curl then md5sum + openssl sha256 of each file (--no-curl-hash);
// - wget -i, one URL at a time (--no-wget); aria2c -i -j WORKERS (--no-aria2);
// - the seed's approach, bench/seed_approach.py (--no-seed): Python requests,
//   8 KB chunks into MD5 and a temp file, Pillow, a thread pool; run with
//   $BENCH_PYTHON, else /usr/bin/python3;
// - "bare Node" (--no-bare-node): the least a durable Node downloader must do
//   per file (undici request, MD5 + SHA-256, write, fdatasync, rename; no
//   index, no sniffing, no limits) with the same parallelism, and for the
//   large set the same without hashing (Node's own I/O cost).
// A peer whose binary (or Python module) is missing is skipped with a note.
// Rounds run the sides in rotating order, each on a settled disk; medians
// are printed, with ratios to curl -Z and the issue's targets for the daemon.
// --profile DIR: V8 CPU profiles of the library child and the daemon.
// BENCH_WRAP="strace -f -c -o FILE" (or "perf record -g -o FILE") runs the
// library side under that command; BENCH_WRAP_BARE the bare Node peer.
// BENCH_DAEMON_NODE_ARGS="--max-semi-space-size=8" runs the daemon side with
// these node flags instead of the ones in bin/mediacached.js's first line.
//
// The origin runs in its own process (bench/origin.js). Test data is
// generated into a temp dir (streamed, never held in memory) and removed at the end.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, numberArg, settleDisk } from './_args.js';
import { cachedFiles, measured, runAria2, runDaemon, runSeed, runWget, seedUnavailable, which } from './_peers.js';
import { generateSmall, startOrigin } from './_smallset.js';

const MiB = 1024 * 1024;


const args = parseArgs(process.argv.slice(2));
const num = (k, d) => numberArg(args, k, d);

// ---------------------------------------------------------------- child mode
async function childMain() {
  const { MediaCache } = await import('../dist/core/index.js');
  const urls = fs.readFileSync(args['urls-file'], 'utf8').split('\n').filter(Boolean);
  const workers = Number(args.workers);
  // Peak RSS from VmHWM; sampled (cheaply) only where /proc is missing.
  let peak = 0;
  const sample = () => (peak = Math.max(peak, process.memoryUsage.rss()));
  const timer = fs.existsSync('/proc/self/status') ? undefined : setInterval(sample, 50);
  // Wall and CPU both from here: node's own start-up and module loading are not counted.
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const maxSize = args['max-size'] !== undefined ? Number(args['max-size']) : undefined;
  const cache = await MediaCache.open({ cacheDir: args['cache-dir'], concurrency: workers, timeoutMs: 120_000, ...(maxSize ? { maxSize } : {}) });
  const recs = await cache.downloadMany(urls, { maxWorkers: workers });
  const commits = { ...cache.committer.stats, journalAppends: cache.index.embedded?.diagnostics.journalAppends ?? 0 };
  const st = await cache.stats();
  await cache.close();
  const ms = performance.now() - t0;
  if (timer) clearInterval(timer);
  sample();
  let hwm;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) hwm = Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  const bytes = recs.reduce((s, r) => s + r.fileSize, 0);
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  process.stdout.write(`${JSON.stringify({ ms, cpuMs, files: recs.length, bytes, peakRss: hwm ?? peak, commits, used: st.totalSize, evicted: st.evicted?.count ?? 0 })}\n`);
}

/**
 * The "bare Node" peer: per URL, undici's request(), a new file in .tmp/,
 * each chunk hashed (MD5 + SHA-256, on the main thread) and written in
 * 512 KiB writev batches, fdatasync, close, rename to its MD5 name. What any durable Node downloader pays before doing anything
 * else; run in its own process like ours.
 */
async function bareNodeMain() {
  const { request, Agent } = await import('undici');
  const urls = fs.readFileSync(args['urls-file'], 'utf8').split('\n').filter(Boolean);
  const workers = Number(args.workers);
  const out = String(args['out-dir']);
  const tmp = path.join(out, '.tmp');
  fs.mkdirSync(tmp, { recursive: true });
  fs.mkdirSync(path.join(out, 'files'), { recursive: true });
  const dispatcher = new Agent();
  const hash = !args['no-hash'];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  let bytes = 0;
  const one = async (i) => {
    const { statusCode, body } = await request(urls[i], { dispatcher });
    if (statusCode !== 200) throw new Error(`HTTP ${statusCode} for ${urls[i]}`);
    const part = path.join(tmp, `${i}.part`);
    const fh = await fs.promises.open(part, 'wx');
    const md5 = crypto.createHash('md5');
    const sha = crypto.createHash('sha256');
    try {
      let batch = [];
      let held = 0;
      for await (const c of body) {
        if (hash) {
          md5.update(c);
          sha.update(c);
        }
        batch.push(c);
        held += c.length;
        bytes += c.length;
        if (held >= 512 * 1024) {
          await fh.writev(batch);
          batch = [];
          held = 0;
        }
      }
      if (batch.length) await fh.writev(batch);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    sha.digest('hex');
    await fs.promises.rename(part, path.join(out, 'files', hash ? md5.digest('hex') : `${i}`));
  };
  await Promise.all(Array.from({ length: workers }, async () => {
    while (next < urls.length) await one(next++);
  }));
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await dispatcher.close();
  process.stdout.write(`${JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000, files: urls.length, bytes })}\n`);
}

// ---------------------------------------------------------------- data
/**
 * An MP4 (ftyp + one mdat box) of `size` bytes, streamed from a reused random
 * block; returns its MD5 and SHA-256 (to check the hashing peer's output).
 */
async function writeLargeMp4(file, size, id) {
  const fh = await fs.promises.open(file, 'w');
  const md5 = crypto.createHash('md5');
  const sha = crypto.createHash('sha256');
  try {
    const head = Buffer.alloc(40);
    head.writeUInt32BE(32, 0);
    head.write('ftypisom', 4, 'latin1');
    head.writeUInt32BE(0x200, 12);
    head.write('isomiso2avc1mp41', 16, 'latin1');
    head.writeUInt32BE(size - 32, 32);
    head.write('mdat', 36, 'latin1');
    await fh.write(head);
    md5.update(head);
    sha.update(head);
    const block = crypto.randomBytes(8 * MiB);
    let left = size - head.length;
    let n = 0;
    while (left > 0) {
      block.writeUInt32BE(id, 0);
      block.writeUInt32BE(n++, 4);
      const len = Math.min(left, block.length);
      await fh.write(block, 0, len);
      md5.update(block.subarray(0, len));
      sha.update(block.subarray(0, len));
      left -= len;
    }
  } finally {
    await fh.close();
  }
  return { md5: md5.digest('hex'), sha256: sha.digest('hex') };
}

async function generateLarge(dir, count, mib) {
  fs.mkdirSync(dir, { recursive: true });
  const names = [];
  const digests = [];
  for (let i = 0; i < count; i++) {
    const name = `video-${i}.mp4`;
    digests.push(await writeLargeMp4(path.join(dir, name), mib * MiB, i + 1));
    names.push(name);
  }
  return { names, bytes: count * mib * MiB, digests };
}

// ---------------------------------------------------------------- processes
function run(cmd, argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], ...opts });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.once('error', reject);
    child.once('exit', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`${cmd} exited with ${code}`));
      else resolve({ ms, out });
    });
  });
}

function dirBytes(dir) {
  let n = 0;
  let files = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) {
      n += fs.statSync(path.join(e.parentPath ?? e.path, e.name)).size;
      files++;
    }
  }
  return { bytes: n, files };
}

/**
 * Remove a run's output. The small set's outputs are kept until the bench
 * ends: this machine's ext4 has no journal, and on such a filesystem a new
 * inode is not taken from inodes deleted in the last 60-300 s (the kernel's
 * recently_deleted() check), so each file created after thousands of deletes
 * scans past all of them. Deleting one run's 2,000 files right before the
 * next timed run made that run's file creation cost up to 1 ms of kernel CPU
 * per file, for whichever tool came next. The large set has 4 files and is
 * removed at once, for disk space.
 */
function discardOutput(dir, set) {
  if (set === 'large') fs.rmSync(dir, { recursive: true, force: true });
  else fs.renameSync(dir, `${dir}.done-${process.hrtime.bigint()}`);
}

/** `node argv`, or under the command in env var `wrapVar` (strace, perf): [command, args]. */
function nodeCommand(wrapVar, argv) {
  const wrap = process.env[wrapVar] ? process.env[wrapVar].split(' ') : [];
  return wrap.length ? [wrap[0], [...wrap.slice(1), process.execPath, ...argv]] : [process.execPath, argv];
}

async function runOurs(tmp, set, urls, workers, extra = []) {
  const cacheDir = path.join(tmp, `ours-${set}`);
  const urlsFile = path.join(tmp, `${set}.urls`);
  fs.writeFileSync(urlsFile, urls.join('\n') + '\n');
  try {
    // --profile DIR: a V8 CPU profile of our side (open → downloads → close) per run.
    const prof = args.profile ? ['--cpu-prof', '--cpu-prof-dir', String(args.profile)] : [];
    const { out } = await run(...nodeCommand('BENCH_WRAP', [
      ...prof,
      fileURLToPath(import.meta.url), '--child', '--urls-file', urlsFile, '--cache-dir', cacheDir, '--workers', String(workers), ...extra,
    ]));
    return JSON.parse(out.trim().split('\n').pop());
  } finally {
    if (fs.existsSync(cacheDir)) discardOutput(cacheDir, set);
  }
}

async function runBareNode(tmp, set, urls, workers, { hash = true } = {}) {
  const outDir = path.join(tmp, `bare-${set}`);
  const urlsFile = path.join(tmp, `${set}.urls`);
  fs.writeFileSync(urlsFile, urls.join('\n') + '\n');
  try {
    const { out } = await run(...nodeCommand('BENCH_WRAP_BARE', [
      fileURLToPath(import.meta.url), '--bare-node', '--urls-file', urlsFile, '--out-dir', outDir, '--workers', String(workers),
      ...(hash ? [] : ['--no-hash']),
    ]));
    return JSON.parse(out.trim().split('\n').pop());
  } finally {
    if (fs.existsSync(outDir)) discardOutput(outDir, set);
  }
}

/**
 * curl -Z over the URLs. `durable`: then `sync -f` on its output folder
 * (syncfs), so its files are on disk when the time stops, as ours are (we
 * fdatasync each file before it is published). The plain run leaves its
 * writeback to the kernel after the clock stops.
 */
async function runCurl(tmp, set, urls, names, workers, { durable = false } = {}) {
  const outDir = path.join(tmp, durable ? `curl-sync-${set}` : `curl-${set}`);
  fs.mkdirSync(outDir, { recursive: true });
  const cfg = path.join(tmp, `${set}.curlrc`);
  fs.writeFileSync(cfg, urls.map((u, i) => `url = "${u}"\noutput = "${path.join(outDir, names[i])}"\n`).join(''));
  try {
    const curlArgs = ['-Z', '--parallel-max', String(workers), '--parallel-immediate', '-s', '-S', '--no-progress-meter', '--fail', '-K', cfg];
    const sync = durable ? ` && sync -f '${outDir.replace(/'/g, `'\\''`)}'` : '';
    const { ms, cpuMs, peakRss } = await measured('sh', ['-c', `curl "$@"${sync}`, 'sh', ...curlArgs]);
    return { ms, cpuMs, peakRss, ...dirBytes(outDir) };
  } finally {
    discardOutput(outDir, set);
  }
}

/**
 * The same work as ours with standard tools (large set): per URL, curl writes
 * the file, then `md5sum` and `openssl dgst -sha256` (SHA-NI; coreutils'
 * sha256sum here is ~5x slower) hash it at the same time from the page cache;
 * all URLs at once, like curl -Z. Neither side's peers fsync; ours does.
 * Tried first: streaming with `curl | tee FILE FIFO | openssl dgst -sha256`
 * and `md5sum < FIFO`: 4.0-9.1 s and 7-8.7 s CPU against 3.0-4.6 s and
 * 4.6-4.9 s CPU for this (tee and openssl move the bytes in 8 KiB pipe
 * reads and writes). Digests are checked against the generated data. CPU
 * time: every process is a waited descendant of the shell (_peers.js measured).
 */
async function runCurlHash(tmp, set, urls, names, expected) {
  const outDir = path.join(tmp, `curlhash-${set}`);
  fs.mkdirSync(outDir, { recursive: true });
  const script = [
    'd=$1; shift; i=0; pids=',
    'for u in "$@"; do',
    '  i=$((i+1))',
    '  ( curl -s -S --fail --no-progress-meter -o "$d/f$i" "$u" || exit 1',
    '    md5sum "$d/f$i" > "$d/$i.md5" &',
    '    openssl dgst -sha256 -r "$d/f$i" > "$d/$i.sha256"',
    '    s=$?; wait $! || s=1; exit $s ) &',
    '  pids="$pids $!"',
    'done',
    's=0; for p in $pids; do wait $p || s=1; done',
    'exit $s',
  ].join('\n');
  try {
    const { ms, cpuMs, peakRss } = await measured('sh', ['-c', script, 'sh', outDir, ...urls]);
    for (let i = 0; i < urls.length; i++) {
      const md5 = fs.readFileSync(path.join(outDir, `${i + 1}.md5`), 'utf8').split(' ')[0];
      const sha256 = fs.readFileSync(path.join(outDir, `${i + 1}.sha256`), 'utf8').split(' ')[0];
      if (md5 !== expected[i].md5 || sha256 !== expected[i].sha256) throw new Error(`curl+hash: wrong digests for ${names[i]}`);
    }
    const files = fs.readdirSync(outDir).filter((n) => /^f\d+$/.test(n));
    const bytes = files.reduce((n, f) => n + fs.statSync(path.join(outDir, f)).size, 0);
    return { ms, cpuMs, peakRss, files: files.length, bytes };
  } finally {
    discardOutput(outDir, set);
  }
}

/** Run one external peer into `outDir`, count what it wrote, discard it. */
async function peerRun(outDir, set, fn) {
  try {
    const r = await fn(outDir);
    return { ...r, ...dirBytes(outDir) };
  } finally {
    if (fs.existsSync(outDir)) discardOutput(outDir, set);
  }
}

/**
 * Every side of one set, in run order: { key, label, run() → {ms, cpuMs,
 * peakRss, files, bytes} }. `checkBytes`: the side writes exactly the
 * origin's bytes (ours dedup nothing here, but count only content files).
 */
function sidesFor(tmp, set, d, c, avail) {
  const urls = d.urls;
  const urlsFile = path.join(tmp, `${set}.urls`);
  fs.writeFileSync(urlsFile, urls.join('\n') + '\n');
  const sides = [];
  const add = (key, label, run, checkBytes = true) => sides.push({ key, label, run, checkBytes });
  add('library', 'mediacache library (downloadMany)', () => runOurs(tmp, set, urls, c.workers));
  if (args['quota-half'] && set === 'small') {
    const quota = Math.floor(d.bytes / 2);
    add('quota', `mediacache library, --max-size ${(quota / MiB).toFixed(1)} MiB (half the set)`, async () => {
      const o = await runOurs(tmp, set, urls, c.workers, ['--max-size', String(quota)]);
      if (o.used > quota) throw new Error(`library with a quota of ${quota} bytes ended holding ${o.used}`);
      return o;
    });
  }
  if (!args['no-daemon']) {
    add('daemon', 'mediacache daemon (mcctl add -f --wait)', async () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mcb-'));
      try {
        const r = await runDaemon(root, urlsFile, c.workers, { profileDir: args.profile ? String(args.profile) : undefined });
        return { ...r, ...cachedFiles(r.cacheDir) };
      } finally {
        if (set === 'large') fs.rmSync(root, { recursive: true, force: true });
        else fs.renameSync(root, path.join(tmp, `daemon-${set}.done-${process.hrtime.bigint()}`));
      }
    });
  }
  if (avail.curl) add('curl', `curl -Z --parallel-max ${c.workers}`, () => runCurl(tmp, set, urls, d.names, c.workers));
  if (avail.curl && !args['no-curl-sync']) add('curlSync', 'curl -Z, then sync -f (on disk when the clock stops)', () => runCurl(tmp, set, urls, d.names, c.workers, { durable: true }));
  if (avail.wget) add('wget', 'wget -i (one at a time)', () => peerRun(path.join(tmp, `wget-${set}`), set, (o) => runWget(urlsFile, o)));
  if (avail.aria2) add('aria2', `aria2c -i -j ${c.workers}`, () => peerRun(path.join(tmp, `aria2-${set}`), set, (o) => runAria2(urlsFile, o, c.workers)));
  if (avail.seed) add('seed', `seed's approach (Python requests, 8 KB, MD5, Pillow, ${c.workers} threads)`, () => peerRun(path.join(tmp, `seed-${set}`), set, (o) => runSeed(urlsFile, o, c.workers)));
  if (!args['no-bare-node']) {
    add('bare', 'bare Node (undici, MD5+SHA-256, writev, fdatasync, rename)', () => runBareNode(tmp, set, urls, c.workers));
    if (set === 'large') add('bareIo', 'bare Node without hashing', () => runBareNode(tmp, set, urls, c.workers, { hash: false }));
  }
  if (avail.curl && set === 'large' && !args['no-curl-hash']) {
    add('curlHash', 'curl, then md5sum + openssl sha256 per file', () => runCurlHash(tmp, set, urls, d.names, d.digests));
  }
  return sides;
}

const fmtMs = (ms) => `${(ms / 1000).toFixed(2)} s`;
const fmtMiB = (b) => (b === undefined ? '-' : `${(b / MiB).toFixed(0)} MiB`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const medianOf = (xs) => (xs.length && xs.every((x) => x !== undefined) ? median(xs) : undefined);

async function main() {
  const sets = String(args.sets ?? 'small,large').split(',');
  const runs = Math.max(1, num('runs', 3));
  const cfg = {
    small: { count: num('small-count', 2000), workers: num('small-workers', 16), target: 2.0 },
    large: { count: num('large-count', 4), workers: num('large-workers', 4), target: 1.6, mib: num('large-mib', 256) },
  };
  const RSS_TARGET = 120 * MiB;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-bench-'));
  const notes = [];
  const avail = { curl: false, wget: false, aria2: false, seed: false };
  const want = (flag, bin, key, install) => {
    if (args[flag]) return;
    if (which(bin)) avail[key] = true;
    else notes.push(`${bin} not found: skipped (${install})`);
  };
  want('no-curl', 'curl', 'curl', 'apt-get install curl');
  want('no-wget', 'wget', 'wget', 'apt-get install wget');
  want('no-aria2', 'aria2c', 'aria2', 'apt-get install aria2');
  if (!args['no-seed']) {
    const why = seedUnavailable();
    if (why) notes.push(`seed's approach skipped: ${why}`);
    else avail.seed = true;
  }
  let origin;
  const cleanup = () => {
    origin?.child.kill('SIGTERM');
    fs.rmSync(tmp, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const results = [];
  try {
    const src = path.join(tmp, 'src');
    const data = {};
    const tg = performance.now();
    if (sets.includes('small')) data.small = generateSmall(src, cfg.small.count);
    if (sets.includes('large')) data.large = await generateLarge(src, cfg.large.count, cfg.large.mib);
    console.log(`# download bench: data generated in ${fmtMs(performance.now() - tg)} under ${tmp}`);
    for (const n of notes) console.log(`# ${n}`);
    origin = await startOrigin(src);
    const base = `http://127.0.0.1:${origin.port}`;
    for (const set of sets) {
      const d = data[set];
      if (!d) continue;
      const c = cfg[set];
      d.urls = d.names.map((n) => `${base}/${n}`);
      const sides = sidesFor(tmp, set, d, c, avail);
      const got = Object.fromEntries(sides.map((s) => [s.key, []]));
      const loads = [];
      // Rounds in rotating order, each side on a settled disk, so no side
      // always pays for the one before it (writeback, deletes, cache state).
      for (let r = 0; r < runs; r++) {
        for (let k = 0; k < sides.length; k++) {
          const side = sides[(k + r) % sides.length];
          await settleDisk();
          loads.push(os.loadavg()[0]);
          const o = await side.run();
          if (o.files !== d.names.length || (side.checkBytes && o.bytes !== d.bytes)) {
            throw new Error(`${side.label}: wrote ${o.files} files, ${o.bytes} bytes; expected ${d.names.length}, ${d.bytes}`);
          }
          got[side.key].push(o);
        }
      }
      const row = (key) => {
        const xs = got[key];
        if (!xs?.length) return undefined;
        return {
          ms: median(xs.map((x) => x.ms)),
          cpuMs: medianOf(xs.map((x) => x.cpuMs)),
          peakRss: xs.every((x) => x.peakRss !== undefined) ? Math.max(...xs.map((x) => x.peakRss)) : undefined,
        };
      };
      const curl = row('curl');
      const res = { set, files: d.names.length, bytes: d.bytes, workers: c.workers, runs, loadavg: { min: Math.min(...loads), max: Math.max(...loads) }, sides: {} };
      console.log(`\n${set}: ${d.names.length} files, ${(d.bytes / MiB).toFixed(1)} MiB, ${c.workers} at a time; medians of ${runs}; load average ${res.loadavg.min.toFixed(1)}-${res.loadavg.max.toFixed(1)} on ${os.cpus().length} CPUs`);
      console.log(`  ${'side'.padEnd(64)} ${'time'.padStart(8)} ${'x curl'.padStart(7)} ${'files/s'.padStart(8)} ${'MiB/s'.padStart(7)} ${'CPU'.padStart(8)} ${'peak RSS'.padStart(9)}`);
      for (const side of sides) {
        const x = row(side.key);
        const ratio = curl ? x.ms / curl.ms : undefined;
        res.sides[side.key] = { label: side.label, ms: Math.round(x.ms), cpuMs: x.cpuMs && Math.round(x.cpuMs), peakRssMiB: x.peakRss && +(x.peakRss / MiB).toFixed(1), xCurl: ratio && +ratio.toFixed(2) };
        console.log(
          `  ${side.label.padEnd(64)} ${fmtMs(x.ms).padStart(8)} ${(ratio ? ratio.toFixed(2) : '-').padStart(7)}` +
            ` ${(d.names.length / (x.ms / 1000)).toFixed(0).padStart(8)} ${(d.bytes / MiB / (x.ms / 1000)).toFixed(1).padStart(7)}` +
            ` ${(x.cpuMs === undefined ? '-' : fmtMs(x.cpuMs)).padStart(8)} ${fmtMiB(x.peakRss).padStart(9)}`,
        );
      }
      const q = row('quota');
      const plain = row('library');
      if (q && plain) {
        const ratio = q.ms / plain.ms;
        res.quotaRatio = +ratio.toFixed(2);
        res.quotaEvicted = median(got.quota.map((x) => x.evicted));
        console.log(`  quota: ${res.quotaEvicted} files evicted; ${ratio.toFixed(2)}x the library without a quota (target <= 1.2x): ${ratio <= 1.2 ? 'met' : 'NOT met'}`);
      }
      const lib = got.library?.at(-1)?.commits;
      if (lib) console.log(`  library: ${lib.files} files committed in ${lib.batches} batches (largest ${lib.largestBatch}), ${lib.journalAppends} journal appends`);
      const dm = row('daemon');
      const dCpu = got.daemon?.length ? medianOf(got.daemon.map((x) => x.daemonCpuMs)) : undefined;
      if (dm && dCpu !== undefined && dm.cpuMs !== undefined) console.log(`  daemon CPU: ${fmtMs(dCpu)} in mediacached, ${fmtMs(dm.cpuMs - dCpu)} in mcctl (start-up, rendering)`);
      if (dm) {
        const verdict = (ok) => (ok ? 'met' : 'NOT met');
        const checks = [];
        if (curl) checks.push(`daemon ${(dm.ms / curl.ms).toFixed(2)}x curl (target <= ${c.target}x): ${verdict(dm.ms <= c.target * curl.ms)}`);
        const faster = set === 'small' ? ['wget'] : ['aria2', 'wget'];
        for (const k of faster) {
          const p = row(k);
          if (p) checks.push(`daemon ${(dm.ms / p.ms).toFixed(2)}x ${k === 'aria2' ? 'aria2c' : 'wget -i'} (target < 1): ${verdict(dm.ms < p.ms)}`);
        }
        if (set === 'large' && dm.peakRss !== undefined) checks.push(`daemon peak RSS ${fmtMiB(dm.peakRss)} (target <= 120 MiB): ${verdict(dm.peakRss <= RSS_TARGET)}`);
        const bare = row('bare');
        if (bare && curl) checks.push(`floor: bare Node ${(bare.ms / curl.ms).toFixed(2)}x curl, daemon ${(dm.ms / bare.ms).toFixed(2)}x bare Node`);
        for (const line of checks) console.log(`  ${line}`);
        res.targets = checks;
      }
      results.push(res);
    }
    if (args.json) console.log(JSON.stringify(results));
  } finally {
    cleanup();
  }
}

if (args.child) await childMain();
else if (args['bare-node']) await bareNodeMain();
else await main();
