// Metadata extraction cost: what the `metadata` step adds to a download.
//
//   node bench/metadata.js [--small-count 2000] [--large-mib 256] [--runs 20] [--json]
//
// 1. each fixture of test/fixtures/meta (median of --runs extractions; the
//    audio parser thread is warmed first, as it is in a busy daemon);
// 2. an MP4 of --large-mib MiB with its moov box after the media data (the
//    ffmpeg default): the extraction beside one full read of the same file
//    (what a second pass over the bytes would cost) and beside MD5 + SHA-256
//    of it (what the download already pays per byte);
// 3. --small-count small images (jpg, png, gif, webp from test/fixtures),
//    read from their files sequentially and 16 at a time (the small-set
//    download's parallelism), and as a download calls it, with the first
//    bytes handed over from memory.
// Files are written to a temp dir (page cache warm, as right after a
// download) and removed at the end. Needs `npm run build` first.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, numberArg } from './_args.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIX = path.join(HERE, '..', 'test', 'fixtures');
const MiB = 1024 * 1024;
const args = parseArgs();
const runs = numberArg(args, 'runs', 20);
const smallCount = numberArg(args, 'small-count', 2000);
const largeMib = numberArg(args, 'large-mib', 256);

const { extractMetadata } = await import('../dist/core/metadata/index.js');
const { sniff } = await import('../dist/core/content/sniff.js');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sniffFile = (p) => sniff(new Uint8Array(fs.readFileSync(p).subarray(0, 4100)));
const out = { fixtures: {}, large: {}, small: {} };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-meta-bench-'));

try {
  // 1. fixtures
  await extractMetadata(path.join(FIX, 'meta', 'tone.mp3'), sniffFile(path.join(FIX, 'meta', 'tone.mp3')));
  for (const name of fs.readdirSync(path.join(FIX, 'meta')).sort()) {
    const p = path.join(FIX, 'meta', name);
    const s = sniffFile(p);
    if (!s) continue;
    const ms = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await extractMetadata(p, s);
      ms.push(performance.now() - t0);
    }
    out.fixtures[name] = +median(ms).toFixed(3);
  }

  // 2. large MP4, moov at the end
  const src = fs.readFileSync(path.join(FIX, 'meta', 'h264-faststart.mp4'));
  const ftypLen = src.readUInt32BE(0);
  const moov = src.subarray(ftypLen, ftypLen + src.readUInt32BE(ftypLen));
  const big = path.join(tmp, 'big.mp4');
  const fd = fs.openSync(big, 'w');
  fs.writeSync(fd, src.subarray(0, ftypLen));
  const mdatHdr = Buffer.alloc(16);
  mdatHdr.writeUInt32BE(1, 0);
  mdatHdr.write('mdat', 4);
  mdatHdr.writeBigUInt64BE(BigInt(16 + largeMib * MiB), 8);
  fs.writeSync(fd, mdatHdr);
  const chunk = crypto.randomBytes(4 * MiB);
  for (let i = 0; i < largeMib / 4; i++) fs.writeSync(fd, chunk);
  fs.writeSync(fd, moov);
  fs.closeSync(fd);
  const s = sniffFile(big);
  const ex = [];
  let meta;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    meta = await extractMetadata(big, s);
    ex.push(performance.now() - t0);
  }
  const readAll = async (hash) => {
    const t0 = performance.now();
    const md5 = crypto.createHash('md5');
    const sha = crypto.createHash('sha256');
    for await (const c of fs.createReadStream(big, { highWaterMark: 4 * MiB })) {
      if (hash) {
        md5.update(c);
        sha.update(c);
      }
    }
    return performance.now() - t0;
  };
  const read = median([await readAll(false), await readAll(false), await readAll(false)]);
  const hashed = await readAll(true);
  out.large = {
    mib: largeMib,
    extractMs: +median(ex).toFixed(3),
    fullReadMs: +read.toFixed(1),
    md5Sha256Ms: +hashed.toFixed(1),
    metadata: meta.metadata,
  };
  fs.rmSync(big);

  // 3. small images
  const kinds = ['sample.jpg', 'sample.png', 'sample.gif', 'sample.webp', 'meta/rot6.jpg', 'meta/anim.gif'].map((n) => fs.readFileSync(path.join(FIX, n)));
  const files = [];
  for (let i = 0; i < smallCount; i++) {
    const b = kinds[i % kinds.length];
    const p = path.join(tmp, `img-${i}${path.extname(['a.jpg', 'a.png', 'a.gif', 'a.webp', 'a.jpg', 'a.gif'][i % kinds.length])}`);
    fs.writeFileSync(p, b);
    files.push({ p, s: sniff(new Uint8Array(b.subarray(0, 4100))) });
  }
  let t0 = performance.now();
  for (const f of files) await extractMetadata(f.p, f.s);
  const seq = performance.now() - t0;
  t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < files.length) {
        const f = files[next++];
        await extractMetadata(f.p, f.s);
      }
    }),
  );
  const par = performance.now() - t0;
  // As a download calls it: the first bytes (<= 64 KiB) are handed over from memory.
  const heads = files.map((f) => {
    const b = fs.readFileSync(f.p);
    return { bytes: b.subarray(0, 64 * 1024), size: b.length };
  });
  const cpu0 = process.cpuUsage();
  t0 = performance.now();
  for (let i = 0; i < files.length; i++) await extractMetadata(files[i].p, files[i].s, { head: heads[i] });
  const withHead = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  out.small = {
    count: smallCount,
    sequentialMs: +seq.toFixed(1),
    parallel16Ms: +par.toFixed(1),
    perFileMs: +(seq / smallCount).toFixed(3),
    withHeadMs: +withHead.toFixed(1),
    withHeadCpuMs: +((cpu.user + cpu.system) / 1000).toFixed(1),
  };
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

if (args.json) console.log(JSON.stringify(out));
else {
  console.log('metadata extraction, median ms per file:');
  for (const [k, v] of Object.entries(out.fixtures)) console.log(`  ${k.padEnd(24)} ${v}`);
  const l = out.large;
  console.log(`${l.mib} MiB MP4, moov at the end: extract ${l.extractMs} ms; one full read ${l.fullReadMs} ms; MD5+SHA-256 ${l.md5Sha256Ms} ms`);
  const sm = out.small;
  console.log(`${sm.count} small images from their files: ${sm.sequentialMs} ms one at a time (${sm.perFileMs} ms each), ${sm.parallel16Ms} ms 16 at a time`);
  console.log(`${sm.count} small images with the download's head bytes: ${sm.withHeadMs} ms (CPU ${sm.withHeadCpuMs} ms)`);
}
process.exit(0);
