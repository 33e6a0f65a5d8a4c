import t from 'tap';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash, randomFillSync } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { HashSink } from '../../../src/core/fetch/sink.js';
import { sharedHashPool } from '../../../src/core/hash/stream-hasher.js';
import { waitFor } from '../../helpers/wait.js';
import { FIXTURE_DIR } from '../../helpers/origin.js';
import { imageDimensions } from '../../../src/core/content/sniff.js';

/** An MP4 (ftyp + mdat) of `size` random-ish bytes, as the download bench serves. */
function mp4(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let off = 0; off < size; off += 65536) randomFillSync(b, off, Math.min(65536, size - off));
  b.writeUInt32BE(32, 0);
  b.write('ftypisom', 4, 'latin1');
  b.writeUInt32BE(0x200, 12);
  b.write('isomiso2avc1mp41', 16, 'latin1');
  b.writeUInt32BE(size - 32, 32);
  b.write('mdat', 36, 'latin1');
  b.writeUInt32BE(seed, 40);
  return b;
}

const chunked = (b: Buffer, n: number): Readable =>
  Readable.from(
    (function* () {
      for (let off = 0; off < b.length; off += n) yield b.subarray(off, off + n);
    })(),
  );

t.test('HashSink: concurrent large bodies are written whole with the right md5 and sha256', async (t) => {
  const dir = t.testdir();
  const bodies = [mp4(9 * 1024 * 1024 + 17, 1), mp4(7 * 1024 * 1024 + 3, 2), mp4(300 * 1024, 3)];
  const res = await Promise.all(
    bodies.map(async (body, i) => {
      const file = path.join(dir, `${i}.part`);
      const fh = await fsp.open(file, 'wx');
      try {
        const sink = new HashSink(fh.fd, { maxFileSize: 1 << 30, url: `http://x/${i}`, total: body.length, onProgress: undefined });
        await pipeline(chunked(body, 65536 - i * 999), sink);
        return { r: sink.result(), bytes: sink.bytes, file };
      } finally {
        await fh.close();
      }
    }),
  );
  for (let i = 0; i < bodies.length; i++) {
    const { r, bytes, file } = res[i];
    t.equal(bytes, bodies[i].length);
    t.equal(r.md5, createHash('md5').update(bodies[i]).digest('hex'), `md5 ${i}`);
    t.equal(r.sha256, createHash('sha256').update(bodies[i]).digest('hex'), `sha256 ${i}`);
    t.equal(r.sniffed.extension, '.mp4');
    t.ok((await fsp.readFile(file)).equals(bodies[i]), `file ${i} written whole`);
  }
  t.same(
    sharedHashPool()
      .load()
      .map((s) => s.streams),
    sharedHashPool()
      .load()
      .map(() => 0),
    'no stream left open on the hash workers',
  );
});

t.test('HashSink: a body aborted mid-way releases its hash worker', async (t) => {
  const dir = t.testdir();
  const fh = await fsp.open(path.join(dir, 'a.part'), 'wx');
  t.teardown(() => fh.close());
  const sink = new HashSink(fh.fd, { maxFileSize: 1 << 30, url: 'http://x/a', total: undefined, onProgress: undefined });
  const src = new PassThrough();
  const ac = new AbortController();
  const p = pipeline(src, sink, { signal: ac.signal });
  const body = mp4(4 * 1024 * 1024, 4);
  src.write(body);
  await waitFor(() => sharedHashPool().load().some((s) => s.streams > 0), { what: 'the body to reach a hash worker' });
  ac.abort(new Error('user abort'));
  await t.rejects(p, { name: 'AbortError' });
  t.ok(sink.destroyed);
  t.ok(
    sharedHashPool()
      .load()
      .every((s) => s.streams === 0),
    'worker released',
  );
});

t.test('HashSink: a trickle of tiny chunks is copied into the write buffer, never held chunk by chunk', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'trickle.part');
  const fh = await fsp.open(file, 'wx');
  t.teardown(() => fh.close());
  const sink = new HashSink(fh.fd, { maxFileSize: 1 << 30, url: 'http://x/t', total: undefined, onProgress: undefined });
  const src = new PassThrough({ highWaterMark: 1 });
  const done = pipeline(src, sink);
  const body = mp4(11_000, 6);
  for (let off = 0; off < body.length; off += 10) src.write(body.subarray(off, off + 10));
  await waitFor(() => sink.bytes === body.length, { what: 'every chunk taken' });
  const held = sink as unknown as { pending: Buffer[]; fillLen: number };
  t.equal(held.pending.length, 0, 'no chunk object is kept');
  t.equal(held.fillLen, body.length, 'the bytes wait in the one write buffer');
  src.end();
  await done;
  t.equal(sink.bytes, body.length);
  t.ok((await fsp.readFile(file)).equals(body), 'file written whole');
  t.equal(sink.result().md5, createHash('md5').update(body).digest('hex'));
});

t.test('HashSink: JPEG dimensions behind 100 KiB of EXIF and comments, in socket-sized chunks', async (t) => {
  const base = await fsp.readFile(path.join(FIXTURE_DIR, 'sample.jpg'));
  const seg = (marker: number, len: number): Buffer => {
    const b = Buffer.alloc(4 + len, 0x5a);
    b[0] = 0xff;
    b[1] = marker;
    b.writeUInt16BE(len + 2, 2);
    return b;
  };
  const jpg = Buffer.concat([base.subarray(0, 2), seg(0xe1, 60_000), seg(0xfe, 40_000), base.subarray(2)]);
  const want = imageDimensions(base);
  t.ok(want);
  const dir = t.testdir();
  for (const chunk of [1_000, 16_384, 65_536]) {
    const fh = await fsp.open(path.join(dir, `${chunk}.part`), 'wx');
    try {
      const sink = new HashSink(fh.fd, { maxFileSize: 1 << 30, url: 'http://x/j', total: jpg.length, onProgress: undefined });
      await pipeline(chunked(jpg, chunk), sink);
      t.same(sink.result().dims, want, `dims with ${chunk}-byte chunks`);
    } finally {
      await fh.close();
    }
  }
});
