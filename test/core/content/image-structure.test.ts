/**
 * Garbage after a valid image header is not stored as that image: the
 * structure an image declares (PNG chunks to IEND, GIF blocks to the trailer,
 * JPEG segments and scan data to EOI, the WebP RIFF size) must fit the body.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ImageStructureCheck } from '../../../src/core/content/image-structure.js';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { MEDIA_TYPES, TYPE_DIRS } from '../../../src/core/types.js';
import { fixture, startOrigin } from '../../helpers/origin.js';

const IMAGES = ['png', 'gif', 'jpg', 'webp'] as const;

function check(body: Buffer, step = body.length): string | undefined {
  const c = new ImageStructureCheck();
  for (let i = 0; i < body.length; i += step) {
    const p = c.update(body.subarray(i, i + step));
    if (p) return p;
  }
  return c.finish();
}

/** Deterministic noise (no 0x3B-free or 0xFF-free guarantees: like a real random body). */
const noise = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7919 + (i >> 8) * 31) & 255));

t.test('every image fixture passes whole, in any chunking, and with bytes appended after its end', async (t) => {
  for (const ext of IMAGES) {
    const b = fixture(`sample.${ext}`);
    for (const step of [b.length, 7, 1]) t.equal(check(b, step), undefined, `${ext} in ${step}-byte chunks`);
    t.equal(check(Buffer.concat([b, Buffer.from('appended metadata')])), undefined, `${ext} with trailing bytes`);
  }
  // Other types are not walked (sniffed by their leading bytes only).
  for (const ext of ['mp4', 'pdf', 'svg', 'ogg', 'bmp']) t.equal(check(fixture(`sample.${ext}`).subarray(0, 50)), undefined, ext);
});

t.test('garbage after a valid header, and a cut-off image, are refused with a reason', async (t) => {
  for (const ext of ['png', 'gif', 'jpg'] as const) {
    const b = fixture(`sample.${ext}`);
    t.match(check(Buffer.concat([b.subarray(0, 40), noise(20_000)])), /not a (PNG|GIF|JPEG) past its header|ends before/, `${ext}: garbage after the header`);
    t.match(check(b.subarray(0, b.length - 3)), /ends before its (IEND|trailer|EOI)/, `${ext}: cut short`);
  }
  const webp = fixture('sample.webp');
  t.match(check(webp.subarray(0, webp.length - 1)), /shorter .* than its RIFF header says/);
});

t.test('a download of a PNG header followed by garbage is refused and nothing is stored', async (t) => {
  const origin = await startOrigin();
  const dir = t.testdir();
  const cache = await MediaCache.open({ cacheDir: dir, retries: 0, timeoutMs: 5000 });
  t.teardown(async () => {
    await cache.close();
    await origin.close();
  });
  origin.route('/fake.png', { body: Buffer.concat([fixture('sample.png').subarray(0, 33), noise(300_000)]) });
  origin.route('/real.png', { body: fixture('sample.png') });
  await t.rejects(cache.download(origin.url('/fake.png')), { code: 'E_UNSUPPORTED_TYPE', message: /not a complete image/ });
  t.equal(origin.hits('/fake.png'), 1, 'not retried: the content is wrong, not the network');
  const stored = MEDIA_TYPES.flatMap((m) => fs.readdirSync(path.join(dir, TYPE_DIRS[m])));
  t.same(stored, [], 'nothing under a final name');
  t.same(fs.readdirSync(path.join(dir, '.tmp')), [], 'no partial file left');
  t.equal((await cache.download(origin.url('/real.png'))).width, 40, 'a real PNG still is stored');
});
