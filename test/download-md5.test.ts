import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { StreamMd5 } from '../src/core/download-md5.js';

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

async function feed(data: Buffer, chunkSize: number): Promise<string> {
  const h = new StreamMd5();
  for (let off = 0; off < data.length; off += chunkSize) {
    h.update(data.subarray(off, off + chunkSize));
    // Respect the bounded backlog like the download sink does.
    if (h.needsDrain()) await new Promise<void>((r) => h.drained(r));
  }
  return h.digest();
}

t.test('small bodies (inline) and large bodies (worker) give the real MD5', async (t) => {
  const cases: Array<[string, Buffer, number]> = [
    ['empty', Buffer.alloc(0), 1],
    ['one byte', Buffer.from('a'), 1],
    ['20 KiB in 7-byte chunks', randomBytes(20 * 1024), 7],
    ['exactly one batch', randomBytes(1024 * 1024), 65536],
    ['one batch + 1', randomBytes(1024 * 1024 + 1), 65536],
    ['9 MiB in odd chunks', randomBytes(9 * 1024 * 1024 + 12345), 100_003],
    ['3 MiB in one chunk', randomBytes(3 * 1024 * 1024 + 5), 4 * 1024 * 1024],
  ];
  for (const [name, data, chunk] of cases) t.equal(await feed(data, chunk), md5(data), name);
});

t.test('many concurrent streams share the worker without mixing', async (t) => {
  const datas = Array.from({ length: 6 }, (_, i) => randomBytes(2 * 1024 * 1024 + i * 1000));
  const got = await Promise.all(datas.map((d, i) => feed(d, 32 * 1024 + i)));
  t.same(got, datas.map(md5));
});

t.test('backlog is bounded: needsDrain turns on and drained() releases it', async (t) => {
  const h = new StreamMd5();
  const chunk = randomBytes(1024 * 1024);
  let sawDrain = false;
  const all: Buffer[] = [];
  for (let i = 0; i < 12; i++) {
    h.update(chunk);
    all.push(chunk);
    if (h.needsDrain()) {
      sawDrain = true;
      await new Promise<void>((r) => h.drained(r));
      t.notOk(h.needsDrain());
    }
  }
  t.ok(sawDrain, 'writer was asked to wait at some point');
  t.equal(await h.digest(), md5(Buffer.concat(all)));
});

t.test('dispose abandons a stream; use after digest throws', async (t) => {
  const h = new StreamMd5();
  h.update(randomBytes(3 * 1024 * 1024));
  h.dispose();
  t.throws(() => h.update(Buffer.from('x')));
  const h2 = new StreamMd5();
  h2.update(Buffer.from('abc'));
  t.equal(await h2.digest(), md5(Buffer.from('abc')));
  await t.rejects(h2.digest());
  // Another stream still works after one was dropped mid-way.
  t.equal(await feed(Buffer.alloc(5 * 1024 * 1024, 9), 65536), md5(Buffer.alloc(5 * 1024 * 1024, 9)));
});
