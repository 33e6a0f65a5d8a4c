// Download benchmark: MediaCache.downloadMany against curl -Z over the same
// loopback URLs, for many small images and a few large videos.
//
//   npm run bench -- [--small-count 2000] [--large-count 4] [--large-mib 256]
//                    [--small-workers 16] [--large-workers 4] [--sets small,large] [--runs 3]
//                    [--no-curl] [--no-curl-sync] [--no-curl-hash] [--no-bare-node] [--profile DIR] [--json]
//                    [--quota-half]
//
// --quota-half: for the small set, also run ours with --max-size set to half
// the set's bytes (eviction keeps up with the downloads) beside ours without
// a quota, alternating; prints the time ratio (target <= 1.2x).
//
// Peers: curl -Z; curl then `sync -f` of its folder (--no-curl-sync to skip);
// for the large set, curl then md5sum + openssl sha256 of each file
// (--no-curl-hash); "bare Node": the least a durable Node downloader must do
// per file (undici request, MD5 + SHA-256, write, fdatasync, rename; no
// index, no sniffing, no limits) with the same parallelism (--no-bare-node),
// and for the large set the same without hashing (Node's own I/O cost).
// Each timed run starts on a settled disk; the order of ours and the peers
// alternates between runs; medians are printed.
// BENCH_WRAP="strace -f -c -o FILE" (or "perf record -g -o FILE") runs our
// side under that command; BENCH_WRAP_BARE the bare Node peer.
//
// The origin runs in its own process (bench/origin.js); our side runs in a
// child process too, so its peak RSS (VmHWM) is measured alone. Test data is
// generated into a temp dir (streamed, never held in memory) and removed at the end.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { parseArgs, numberArg, settleDisk } from './_args.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, '..', 'test', 'fixtures');
const MiB = 1024 * 1024;


const args = parseArgs(process.argv.slice(2));
const num = (k, d) => numberArg(args, k, d);

// ---------------------------------------------------------------- child mode
async function childMain() {
  const { MediaCache } = await import('../dist/core/index.js');
  const urls = fs.readFileSync(args['urls-file'], 'utf8').split('\n').filter(Boolean);
  const workers = Number(args.workers);
  let peak = 0;
  const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
  const timer = setInterval(sample, 50);
  // Wall and CPU both from here: node's own start-up and module loading are not counted.
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const maxSize = args['max-size'] !== undefined ? Number(args['max-size']) : undefined;
  const cache = await MediaCache.open({ cacheDir: args['cache-dir'], concurrency: workers, timeoutMs: 120_000, ...(maxSize ? { maxSize } : {}) });
  const recs = await cache.downloadMany(urls, { maxWorkers: workers });
  const st = cache.stats();
  await cache.close();
  const ms = performance.now() - t0;
  clearInterval(timer);
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
  process.stdout.write(
    `${JSON.stringify({ ms, cpuMs, files: recs.length, bytes, peakRss: hwm ?? peak, sampledRss: peak, used: st.totalSize, evicted: st.evicted?.count ?? 0 })}\n`,
  );
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
function prng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** A JPEG with a COM segment of `len` varying bytes right after SOI. */
function jpegWithComment(base, i, len) {
  const seg = Buffer.alloc(4 + len);
  seg[0] = 0xff;
  seg[1] = 0xfe;
  seg.writeUInt16BE(len + 2, 2);
  crypto.randomFillSync(seg, 4);
  seg.write(`bench-${i}`, 4, 'latin1');
  return Buffer.concat([base.subarray(0, 2), seg, base.subarray(2)]);
}

/** A PNG with a tEXt chunk of `len` varying bytes right after IHDR. */
function pngWithText(base, i, len) {
  const data = Buffer.alloc(8 + len, 0x61);
  data.write('Comment\0', 0, 'latin1');
  data.write(`bench-${i}-${crypto.randomBytes(len >> 2).toString('hex')}`.slice(0, len), 8, 'latin1');
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write('tEXt', 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(zlib.crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  const ihdrEnd = 8 + 25; // signature + IHDR (4 len + 4 type + 13 data + 4 crc)
  return Buffer.concat([base.subarray(0, ihdrEnd), chunk, base.subarray(ihdrEnd)]);
}

function generateSmall(dir, count) {
  fs.mkdirSync(dir, { recursive: true });
  const jpg = fs.readFileSync(path.join(FIXTURES, 'sample.jpg'));
  const png = fs.readFileSync(path.join(FIXTURES, 'sample.png'));
  const rnd = prng(42);
  const names = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const len = 4096 + Math.floor(rnd() * 56 * 1024); // 4–60 KiB of comment
    const isJpg = i % 2 === 0;
    const buf = isJpg ? jpegWithComment(jpg, i, len) : pngWithText(png, i, len);
    const name = `img-${String(i).padStart(5, '0')}.${isJpg ? 'jpg' : 'png'}`;
    fs.writeFileSync(path.join(dir, name), buf);
    names.push(name);
    bytes += buf.length;
  }
  return { names, bytes };
}

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
function startOrigin(dir) {
  const child = spawn(process.execPath, [path.join(HERE, 'origin.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (line) => resolve({ child, port: JSON.parse(line).port }));
    child.once('exit', (code) => reject(new Error(`origin exited with ${code}`)));
  });
}

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

/** Run `sh -c script sh ...args`; the script writes its /proc stat to fd 3 after its child exits. */
function runWithChildCpu(script, argv) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('sh', ['-c', script, 'sh', ...argv], { stdio: ['ignore', 'inherit', 'inherit', 'pipe'] });
    let stat = '';
    child.stdio[3].on('data', (d) => (stat += d));
    child.once('error', reject);
    child.once('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) return reject(new Error(`curl exited with ${code}`));
      // Fields after the ")" of comm: index 13/14 are cutime/cstime in clock ticks (USER_HZ = 100 on Linux).
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(rest[13]) + Number(rest[14]);
      resolve({ ms, cpuMs: Number.isFinite(ticks) ? ticks * 10 : undefined });
    });
  });
}

function hasCurl() {
  return new Promise((resolve) => {
    const c = spawn('curl', ['--version'], { stdio: 'ignore' });
    c.once('error', () => resolve(false));
    c.once('exit', (code) => resolve(code === 0));
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
    // Through sh so that, on Linux, the shell's /proc stat gives curl's CPU time (cutime + cstime).
    const sync = durable ? ` && sync -f '${outDir.replace(/'/g, `'\\''`)}'` : '';
    const script = `curl "$@"${sync}; s=$?; [ -r /proc/$$/stat ] && cat /proc/$$/stat >&3; exit $s`;
    const { ms, cpuMs } = await runWithChildCpu(script, curlArgs);
    return { ms, cpuMs, ...dirBytes(outDir) };
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
 * time: the shell's cutime + cstime, every process being a waited
 * descendant.
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
    '[ -r /proc/$$/stat ] && cat /proc/$$/stat >&3; exit $s',
  ].join('\n');
  try {
    const { ms, cpuMs } = await runWithChildCpu(script, [outDir, ...urls]);
    for (let i = 0; i < urls.length; i++) {
      const md5 = fs.readFileSync(path.join(outDir, `${i + 1}.md5`), 'utf8').split(' ')[0];
      const sha256 = fs.readFileSync(path.join(outDir, `${i + 1}.sha256`), 'utf8').split(' ')[0];
      if (md5 !== expected[i].md5 || sha256 !== expected[i].sha256) throw new Error(`curl+hash: wrong digests for ${names[i]}`);
    }
    const files = fs.readdirSync(outDir).filter((n) => /^f\d+$/.test(n));
    const bytes = files.reduce((n, f) => n + fs.statSync(path.join(outDir, f)).size, 0);
    return { ms, cpuMs, files: files.length, bytes };
  } finally {
    discardOutput(outDir, set);
  }
}

const fmtMs = (ms) => `${(ms / 1000).toFixed(2)} s`;
const mbps = (bytes, ms) => (bytes / MiB / (ms / 1000)).toFixed(1);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const sets = String(args.sets ?? 'small,large').split(',');
  const runs = Math.max(1, num('runs', 3));
  const cfg = {
    small: { count: num('small-count', 2000), workers: num('small-workers', 16), target: 1.5 },
    large: { count: num('large-count', 4), workers: num('large-workers', 4), target: 1.2, mib: num('large-mib', 256) },
  };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-bench-'));
  const curl = !args['no-curl'] && (await hasCurl());
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
    console.log(`# download bench: data generated in ${fmtMs(performance.now() - tg)} under ${tmp}; curl: ${curl ? 'yes' : 'not found'}`);
    origin = await startOrigin(src);
    const base = `http://127.0.0.1:${origin.port}`;
    for (const set of sets) {
      const d = data[set];
      if (!d) continue;
      const c = cfg[set];
      const urls = d.names.map((n) => `${base}/${n}`);
      const ours = [];
      const theirs = [];
      const peer = [];
      const withPeer = curl && set === 'large' && !args['no-curl-hash'];
      const withSync = curl && !args['no-curl-sync'];
      const withBare = !args['no-bare-node'];
      const withBareIo = withBare && set === 'large';
      const durable = [];
      const bare = [];
      const bareIo = [];
      // Each run starts on a quiet disk, and the order alternates (ours first
      // on even runs, curl first on odd ones), so neither side pays for the
      // other's writeback or deletes.
      const quotaHalf = args['quota-half'] && set === 'small' ? Math.floor(d.bytes / 2) : 0;
      const withQuota = [];
      const oursPlain = [];
      const runQuotaOnce = async () => {
        await settleDisk();
        const o = await runOurs(tmp, set, urls, c.workers, ['--max-size', String(quotaHalf)]);
        if (o.files !== d.names.length) throw new Error(`ours with a quota cached ${o.files} of ${d.names.length} files`);
        if (o.used > quotaHalf) throw new Error(`ours with a quota of ${quotaHalf} bytes ended holding ${o.used}`);
        withQuota.push(o);
      };
      const runOursOnce = async () => {
        // With --quota-half the quota run sits beside each plain run, in alternating order.
        if (quotaHalf && ours.length % 2 === 1) await runQuotaOnce();
        await settleDisk();
        const o = await runOurs(tmp, set, urls, c.workers);
        if (o.files !== d.names.length) throw new Error(`ours cached ${o.files} of ${d.names.length} files`);
        ours.push(o);
        oursPlain.push(o);
        if (quotaHalf && ours.length % 2 === 1) await runQuotaOnce();
      };
      const runCurlOnce = async () => {
        await settleDisk();
        const k = await runCurl(tmp, set, urls, d.names, c.workers);
        if (k.files !== d.names.length || k.bytes !== d.bytes) throw new Error(`curl wrote ${k.files} files, ${k.bytes} bytes`);
        theirs.push(k);
      };
      const runPeerOnce = async () => {
        if (withSync) {
          await settleDisk();
          const k = await runCurl(tmp, set, urls, d.names, c.workers, { durable: true });
          if (k.files !== d.names.length || k.bytes !== d.bytes) throw new Error(`curl+sync wrote ${k.files} files, ${k.bytes} bytes`);
          durable.push(k);
        }
        if (withBare) {
          await settleDisk();
          const k = await runBareNode(tmp, set, urls, c.workers);
          if (k.files !== d.names.length || k.bytes !== d.bytes) throw new Error(`bare Node wrote ${k.files} files, ${k.bytes} bytes`);
          bare.push(k);
        }
        if (withBareIo) {
          await settleDisk();
          const k = await runBareNode(tmp, set, urls, c.workers, { hash: false });
          if (k.files !== d.names.length || k.bytes !== d.bytes) throw new Error(`bare Node (no hash) wrote ${k.files} files, ${k.bytes} bytes`);
          bareIo.push(k);
        }
        if (!withPeer) return;
        await settleDisk();
        const k = await runCurlHash(tmp, set, urls, d.names, d.digests);
        if (k.files !== d.names.length || k.bytes !== d.bytes) throw new Error(`curl+hash wrote ${k.files} files, ${k.bytes} bytes`);
        peer.push(k);
      };
      for (let r = 0; r < runs; r++) {
        if (!curl) {
          await runOursOnce();
          await runPeerOnce();
        } else if (r % 2 === 0) {
          await runOursOnce();
          await runCurlOnce();
          await runPeerOnce();
        } else {
          await runPeerOnce();
          await runCurlOnce();
          await runOursOnce();
        }
      }
      const oMs = median(ours.map((o) => o.ms));
      const kMs = curl ? median(theirs.map((k) => k.ms)) : undefined;
      const peak = Math.max(...ours.map((o) => o.peakRss));
      const oCpu = median(ours.map((o) => o.cpuMs));
      const kCpu = curl && theirs.every((k) => k.cpuMs !== undefined) ? median(theirs.map((k) => k.cpuMs)) : undefined;
      const res = {
        set, files: d.names.length, bytes: d.bytes, workers: c.workers, runs,
        oursMs: Math.round(oMs), curlMs: kMs && Math.round(kMs), ratio: kMs ? +(oMs / kMs).toFixed(2) : undefined,
        peakRssMiB: +(peak / MiB).toFixed(1), target: c.target,
        oursCpuMs: Math.round(oCpu), curlCpuMs: kCpu && Math.round(kCpu), loadavg: os.loadavg()[0],
      };
      if (durable.length) {
        res.curlSyncMs = Math.round(median(durable.map((k) => k.ms)));
        res.curlSyncRatio = +(oMs / median(durable.map((k) => k.ms))).toFixed(2);
      }
      if (bare.length) {
        res.bareNodeMs = Math.round(median(bare.map((k) => k.ms)));
        res.bareNodeCpuMs = Math.round(median(bare.map((k) => k.cpuMs)));
        res.bareNodeRatio = +(oMs / res.bareNodeMs).toFixed(2);
        if (kMs) res.bareNodeVsCurl = +(res.bareNodeMs / kMs).toFixed(2);
      }
      if (bareIo.length) {
        res.bareNodeIoMs = Math.round(median(bareIo.map((k) => k.ms)));
        res.bareNodeIoCpuMs = Math.round(median(bareIo.map((k) => k.cpuMs)));
        if (kMs) res.bareNodeIoVsCurl = +(res.bareNodeIoMs / kMs).toFixed(2);
      }
      if (peer.length) {
        res.curlHashMs = Math.round(median(peer.map((k) => k.ms)));
        res.curlHashCpuMs = peer.every((k) => k.cpuMs !== undefined) ? Math.round(median(peer.map((k) => k.cpuMs))) : undefined;
        res.curlHashRatio = +(oMs / median(peer.map((k) => k.ms))).toFixed(2);
      }
      if (withQuota.length) {
        res.quotaMs = Math.round(median(withQuota.map((k) => k.ms)));
        res.quotaBytes = quotaHalf;
        res.quotaEvicted = median(withQuota.map((k) => k.evicted));
        res.quotaRatio = +(res.quotaMs / median(oursPlain.map((k) => k.ms))).toFixed(2);
        res.quotaCpuMs = Math.round(median(withQuota.map((k) => k.cpuMs)));
        res.quotaCpuRatio = +(res.quotaCpuMs / median(oursPlain.map((k) => k.cpuMs))).toFixed(2);
      }
      results.push(res);
      console.log(
        `${set.padEnd(5)} ${d.names.length} files, ${(d.bytes / MiB).toFixed(1)} MiB, ${c.workers} workers:` +
          ` ours ${fmtMs(oMs)} (${(d.names.length / (oMs / 1000)).toFixed(0)} files/s, ${mbps(d.bytes, oMs)} MiB/s)` +
          (kMs ? ` | curl ${fmtMs(kMs)} (${(d.names.length / (kMs / 1000)).toFixed(0)} files/s, ${mbps(d.bytes, kMs)} MiB/s)` +
            ` | ratio ${res.ratio}x (target <= ${c.target}x) ${res.ratio <= c.target ? 'OK' : 'OVER'}` : '') +
          ` | peak RSS ${res.peakRssMiB} MiB (target < 150) ${peak < 150 * MiB ? 'OK' : 'OVER'}`,
      );
      console.log(
        `      CPU time: ours ${fmtMs(oCpu)}${kCpu !== undefined ? `, curl ${fmtMs(kCpu)} (${(oCpu / kCpu).toFixed(2)}x)` : ''};` +
          ` load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} CPUs (wall ratios are only meaningful on an idle machine)`,
      );
      if (res.curlSyncMs !== undefined) {
        console.log(
          `      durable peer (curl, then sync -f of its folder: on disk when the clock stops, as ours): ${fmtMs(res.curlSyncMs)}` +
            ` (${(d.names.length / (res.curlSyncMs / 1000)).toFixed(0)} files/s) | ratio ${res.curlSyncRatio}x`,
        );
      }
      if (res.bareNodeMs !== undefined) {
        console.log(
          `      bare Node (undici request, MD5 + SHA-256, writev, fdatasync, rename; nothing else): ${fmtMs(res.bareNodeMs)}` +
            ` (${(d.names.length / (res.bareNodeMs / 1000)).toFixed(0)} files/s), CPU ${fmtMs(res.bareNodeCpuMs)}` +
            `${res.bareNodeVsCurl !== undefined ? ` = ${res.bareNodeVsCurl}x curl` : ''} | ours ${res.bareNodeRatio}x bare Node`,
        );
      }
      if (res.bareNodeIoMs !== undefined) {
        console.log(
          `      bare Node without hashing (the same, minus MD5 and SHA-256): ${fmtMs(res.bareNodeIoMs)}, CPU ${fmtMs(res.bareNodeIoCpuMs)}` +
            `${res.bareNodeIoVsCurl !== undefined ? ` = ${res.bareNodeIoVsCurl}x curl` : ''}`,
        );
      }
      if (res.quotaMs !== undefined) {
        console.log(
          `      with --max-size ${(quotaHalf / MiB).toFixed(1)} MiB (half the set): ${fmtMs(res.quotaMs)}, ${res.quotaEvicted} files evicted` +
            ` | ${res.quotaRatio}x the run without a quota (target <= 1.2x) ${res.quotaRatio <= 1.2 ? 'OK' : 'OVER'}` +
            `; CPU ${fmtMs(res.quotaCpuMs)} = ${res.quotaCpuRatio}x`,
        );
      }
      if (res.curlHashMs !== undefined) {
        console.log(
          `      same work (curl, then md5sum + openssl sha256 of each file): ${fmtMs(res.curlHashMs)} (${mbps(d.bytes, res.curlHashMs)} MiB/s)` +
            `${res.curlHashCpuMs !== undefined ? `, CPU ${fmtMs(res.curlHashCpuMs)} (ours ${(oCpu / res.curlHashCpuMs).toFixed(2)}x)` : ''}` +
            ` | ratio ${res.curlHashRatio}x`,
        );
      }
    }
    if (args.json) console.log(JSON.stringify(results));
  } finally {
    cleanup();
  }
}

if (args.child) await childMain();
else if (args['bare-node']) await bareNodeMain();
else await main();
