import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GroupCommitter, SLAB } from '../../../src/core/content/group-commit.js';
import { MediaCacheError } from '../../../src/core/errors.js';

const dir = t.testdir({ '.tmp': {}, images: {} });
const tmp = (name: string): string => path.join(dir, '.tmp', name);
const final = (name: string): string => path.join(dir, 'images', name);

t.test('in-memory bodies land under their final names, complete, in shared batches', async (t) => {
  const c = new GroupCommitter();
  t.teardown(() => c.close());
  const bodies = Array.from({ length: 40 }, (_, i) => crypto.randomBytes(1000 + i * 997));
  await Promise.all(
    bodies.map((b, i) => {
      const data = c.buffer(b.length);
      b.copy(data);
      return c.publish({ tmpPath: tmp(`m${i}.part`), finalPath: final(`m${i}.jpg`), data });
    }),
  );
  for (let i = 0; i < bodies.length; i++) t.same(fs.readFileSync(final(`m${i}.jpg`)), bodies[i], `file ${i}`);
  t.same(fs.readdirSync(path.join(dir, '.tmp')).filter((n) => n.startsWith('m')), [], 'no tmp file left');
  t.equal(c.stats.files, 40);
  t.ok(c.stats.largestBatch > 1, `files share batches (largest ${c.stats.largestBatch})`);
  t.ok(c.stats.batches < 40, `${c.stats.batches} batches for 40 files`);
  t.equal(c.pending, 0);
});

t.test('slabs come back from the worker and are reused; bigger bodies get their own buffer', async (t) => {
  const c = new GroupCommitter();
  t.teardown(() => c.close());
  const data = c.buffer(5000);
  t.equal(data.buffer.byteLength, SLAB, 'a slab-backed view');
  data.fill(7);
  await c.publish({ tmpPath: tmp('s1.part'), finalPath: final('s1.jpg'), data });
  t.equal(data.buffer.byteLength, 0, 'the caller’s view was transferred away');
  t.equal((c as unknown as { free: ArrayBuffer[] }).free.length, 1, 'the slab is back in the free list');
  const again = c.buffer(100);
  t.equal(again.buffer.byteLength, SLAB);
  t.equal((c as unknown as { free: ArrayBuffer[] }).free.length, 0, 'taken from the free list');
  const big = c.buffer(SLAB + 1);
  t.equal(big.length, SLAB + 1);
  big.fill(1);
  await c.publish({ tmpPath: tmp('s2.part'), finalPath: final('s2.jpg'), data: big });
  t.equal(fs.statSync(final('s2.jpg')).size, SLAB + 1);
});

t.test('a body in a shared buffer is copied, not detached from its owner', async (t) => {
  const c = new GroupCommitter();
  t.teardown(() => c.close());
  const pool = Buffer.alloc(64, 9);
  const data = pool.subarray(8, 40);
  await c.publish({ tmpPath: tmp('c1.part'), finalPath: final('c1.jpg'), data });
  t.equal(pool.length, 64, 'the owner still has its memory');
  t.same(fs.readFileSync(final('c1.jpg')), Buffer.alloc(32, 9));
});

t.test('a complete tmp file on disk is synced and moved into place', async (t) => {
  const c = new GroupCommitter();
  t.teardown(() => c.close());
  const body = crypto.randomBytes(300_000);
  fs.writeFileSync(tmp('big.part'), body);
  await c.publish({ tmpPath: tmp('big.part'), finalPath: final('big.mp4') });
  t.same(fs.readFileSync(final('big.mp4')), body);
  t.notOk(fs.existsSync(tmp('big.part')));
});

t.test('failures fail only their own file, with a MediaCacheError', async (t) => {
  const c = new GroupCommitter();
  t.teardown(() => c.close());
  const ok = c.publish({ tmpPath: tmp('f-ok.part'), finalPath: final('f-ok.jpg'), data: Buffer.from('fine') });
  const missingTmp = c.publish({ tmpPath: tmp('not-there.part'), finalPath: final('nt.jpg') });
  const badDir = c.publish({ tmpPath: path.join(dir, 'no-such-dir', 'x.part'), finalPath: final('x.jpg'), data: Buffer.from('x') });
  await Promise.all([t.resolves(ok), t.rejects(missingTmp, MediaCacheError), t.rejects(badDir, MediaCacheError)]);
  t.notOk(fs.existsSync(final('nt.jpg')));
  t.notOk(fs.existsSync(final('x.jpg')));
  t.equal(fs.readFileSync(final('f-ok.jpg'), 'utf8'), 'fine');
});

t.test('a missing type folder is created (the rename falls back to the store)', async (t) => {
  const c = new GroupCommitter();
  t.teardown(() => c.close());
  const target = path.join(dir, 'videos-gone', 'v.mp4');
  await c.publish({ tmpPath: tmp('v.part'), finalPath: target, data: Buffer.from('video') });
  t.equal(fs.readFileSync(target, 'utf8'), 'video');
  t.notOk(fs.existsSync(tmp('v.part')));
});

t.test('close() fails what is pending and refuses new work; the process is not held open', async (t) => {
  const c = new GroupCommitter();
  await c.publish({ tmpPath: tmp('cl0.part'), finalPath: final('cl0.jpg'), data: Buffer.from('a') });
  const pending = t.rejects(c.publish({ tmpPath: tmp('cl1.part'), finalPath: final('cl1.jpg'), data: Buffer.from('b') }), { code: 'E_UNAVAILABLE' });
  await c.close();
  await pending;
  await t.rejects(c.publish({ tmpPath: tmp('cl2.part'), finalPath: final('cl2.jpg'), data: Buffer.from('c') }), { code: 'E_UNAVAILABLE' });
  await c.close();
});
