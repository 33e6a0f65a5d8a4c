// The small image set of the download benches and the origin that serves it
// (bench/origin.js in its own process). Shared by bench/download.js and
// bench/cluster.js so both fetch the same bytes.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, '..', 'test', 'fixtures');

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

export function generateSmall(dir, count) {
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

/** Start bench/origin.js serving `dir`; resolves { child, port } once it listens. */
export function startOrigin(dir) {
  const child = spawn(process.execPath, [path.join(HERE, 'origin.js'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (line) => resolve({ child, port: JSON.parse(line).port }));
    child.once('exit', (code) => reject(new Error(`origin exited with ${code}`)));
  });
}
