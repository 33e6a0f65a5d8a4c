import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import {
  BATCH,
  INLINE_MAX,
  INLINE_MAX_CHUNKS,
  MAX_IN_FLIGHT,
  StreamHasher,
  StreamHashPool,
  defaultHashThreads,
  setInlineHashing,
  type StreamDigests,
} from '../../../src/core/hash/stream-hasher.js';

const digests = (b: Uint8Array): StreamDigests => ({
  md5: createHash('md5').update(b).digest('hex'),
  sha256: createHash('sha256').update(b).digest('hex'),
});

const drained = (h: StreamHasher): Promise<void> => new Promise((resolve, reject) => h.drained((e) => (e ? reject(e) : resolve())));

/** Feed like the download sink does: chunk by chunk, waiting while the backlog is full. */
async function feed(data: Buffer, chunkSize: number, h = new StreamHasher(), onChunk?: (h: StreamHasher) => void): Promise<StreamDigests> {
  for (let off = 0; off < data.length; off += chunkSize) {
    h.update(data.subarray(off, off + chunkSize));
    onChunk?.(h);
    if (h.needsDrain()) await drained(h);
  }
  return h.digest();
}

t.test('small bodies (inline) and large bodies (worker) give the real MD5 and SHA-256', async (t) => {
  const cases: Array<[string, Buffer, number]> = [
    ['empty', Buffer.alloc(0), 1],
    ['one byte', Buffer.from('a'), 1],
    ['20 KiB in 7-byte chunks', randomBytes(20 * 1024), 7],
    ['exactly one batch', randomBytes(BATCH), 65536],
    ['one batch + 1', randomBytes(BATCH + 1), 65536],
    ['exactly the inline limit', randomBytes(INLINE_MAX), 65536],
    ['inline limit + 1 in odd chunks', randomBytes(INLINE_MAX + 1), 7777],
    ['9 MiB in odd chunks', randomBytes(9 * 1024 * 1024 + 12345), 100_003],
    ['3 MiB in one chunk', randomBytes(3 * 1024 * 1024 + 5), 4 * 1024 * 1024],
  ];
  for (const [name, data, chunk] of cases) t.same(await feed(data, chunk), digests(data), name);
});

t.test('a trickle of tiny chunks goes to a worker once it passes INLINE_MAX_CHUNKS, with the right digests', async (t) => {
  const pool = new StreamHashPool({ threads: 1 });
  t.teardown(() => pool.terminate());
  const h = new StreamHasher(pool);
  // 128-byte chunks: the limit is reached at exactly one BATCH, which then goes out at once.
  t.equal(INLINE_MAX_CHUNKS * 128, BATCH);
  const data = randomBytes((INLINE_MAX_CHUNKS + 1000) * 128);
  t.ok(data.length < INLINE_MAX, 'under the byte limit: only the chunk count moves it');
  let movedAt = -1;
  let i = 0;
  const d = await feed(data, 128, h, (x) => {
    if (movedAt < 0 && x.threadId !== undefined) movedAt = i;
    i++;
  });
  t.equal(movedAt, INLINE_MAX_CHUNKS - 1, 'moved to a worker at the chunk that reached the limit, far below INLINE_MAX bytes');
  t.same(d, digests(data));
});

t.test('default hash threads leave the main thread a core: 1 on 1-2 cores, 2 from 3 cores', async (t) => {
  t.same([1, 2, 3, 4, 64].map((c) => defaultHashThreads(c)), [1, 1, 2, 2, 2]);
});

t.test('a body under INLINE_MAX never touches a worker', async (t) => {
  const pool = new StreamHashPool({ threads: 2 });
  t.teardown(() => pool.terminate());
  const h = new StreamHasher(pool);
  const data = randomBytes(INLINE_MAX - 1);
  t.same(await feed(data, 4096, h), digests(data));
  t.same(pool.load(), [], 'no thread started');
  t.equal(pool.allocated, 0, 'no batch buffer allocated');
});

t.test('two concurrent large streams: right digests, one worker each, both released', async (t) => {
  const pool = new StreamHashPool({ threads: 2 });
  t.teardown(() => pool.terminate());
  const a = randomBytes(12 * 1024 * 1024 + 3);
  const b = randomBytes(10 * 1024 * 1024 + 77);
  const ha = new StreamHasher(pool);
  const hb = new StreamHasher(pool);
  let peakLoad: Array<{ threadId: number; streams: number }> = [];
  const watch = (): void => {
    const l = pool.load();
    const open = (x: typeof l): number => x.reduce((n, s) => n + s.streams, 0);
    if (open(l) > open(peakLoad)) peakLoad = l;
  };
  const [da, db] = await Promise.all([feed(a, 64 * 1024, ha, watch), feed(b, 48 * 1024 + 5, hb, watch)]);
  t.same(da, digests(a), 'stream a');
  t.same(db, digests(b), 'stream b');
  t.ok(ha.threadId !== undefined && hb.threadId !== undefined, 'both went to workers');
  t.not(ha.threadId, hb.threadId, 'pinned to different workers');
  t.equal(peakLoad.length, 2, 'two workers ran');
  t.same(
    peakLoad.map((s) => s.streams),
    [1, 1],
    'one stream each',
  );
  t.same(
    pool.load().map((s) => s.streams),
    [0, 0],
    'streams closed after digest',
  );
});

t.test('never more threads than the limit; extra streams share the least-loaded worker', async (t) => {
  const pool = new StreamHashPool({ threads: 2 });
  t.teardown(() => pool.terminate());
  const datas = Array.from({ length: 5 }, (_, i) => randomBytes(3 * 1024 * 1024 + i * 1000));
  const hs = datas.map(() => new StreamHasher(pool));
  // Open all five on the pool before any finishes: each fills its first batch.
  for (let i = 0; i < hs.length; i++) hs[i].update(datas[i].subarray(0, INLINE_MAX));
  t.same(
    pool
      .load()
      .map((s) => s.streams)
      .sort(),
    [2, 3],
    'spread 3 + 2 over two threads',
  );
  const got = await Promise.all(
    hs.map(async (h, i) => {
      if (h.needsDrain()) await drained(h);
      return feed(datas[i].subarray(INLINE_MAX), 40_000 + i, h);
    }),
  );
  t.same(got, datas.map(digests));
  t.equal(pool.load().length, 2);
});

t.test('one stream on an idle pool starts one thread only', async (t) => {
  const pool = new StreamHashPool({ threads: 2 });
  t.teardown(() => pool.terminate());
  const d1 = randomBytes(4 * 1024 * 1024);
  t.same(await feed(d1, 65536, new StreamHasher(pool)), digests(d1));
  const d2 = randomBytes(4 * 1024 * 1024);
  t.same(await feed(d2, 65536, new StreamHasher(pool)), digests(d2));
  t.equal(pool.load().length, 1, 'the idle thread was reused, no second one');
});

t.test('backpressure: needsDrain turns on, in-flight batches and buffers stay bounded', async (t) => {
  const pool = new StreamHashPool({ threads: 1 });
  t.teardown(() => pool.terminate());
  const h = new StreamHasher(pool);
  const chunk = randomBytes(256 * 1024);
  const all: Buffer[] = [];
  let sawDrain = false;
  let maxInFlight = 0;
  for (let i = 0; i < 256; i++) {
    // 64 MiB through a stream that never outruns the worker by more than the bound.
    h.update(chunk);
    all.push(chunk);
    maxInFlight = Math.max(maxInFlight, h.inFlight);
    if (h.needsDrain()) {
      sawDrain = true;
      await drained(h);
      t.notOk(h.needsDrain(), 'drained means room again');
    }
  }
  t.ok(sawDrain, 'writer was asked to wait at some point');
  t.ok(maxInFlight <= MAX_IN_FLIGHT, `at most ${MAX_IN_FLIGHT} batches in flight (saw ${maxInFlight})`);
  t.ok(pool.allocated <= MAX_IN_FLIGHT + 1, `batch buffers recycled: ${pool.allocated} allocated for ${(64 << 20) / BATCH} batches`);
  t.same(await h.digest(), digests(Buffer.concat(all)));
});

t.test('a worker killed mid-stream fails its stream with an error, then the pool recovers', async (t) => {
  const pool = new StreamHashPool({ threads: 2 });
  t.teardown(() => pool.terminate());
  const victim = new StreamHasher(pool);
  const bystander = new StreamHasher(pool);
  victim.update(randomBytes(3 * INLINE_MAX));
  const other = randomBytes(3 * INLINE_MAX + 9);
  bystander.update(other.subarray(0, INLINE_MAX));
  t.not(victim.threadId, bystander.threadId);
  await pool.kill(victim.threadId!);
  // The writer waiting for room hears about it (no hang), and so does the digest.
  await t.rejects(drained(victim), { code: 'E_UNAVAILABLE' });
  await t.rejects(victim.digest(), { code: 'E_UNAVAILABLE', retryable: true });
  t.same(await feed(other.subarray(INLINE_MAX), 65536, bystander), digests(other), 'the other worker\'s stream is unaffected');
  const dead = victim.threadId;
  const a1 = new StreamHasher(pool);
  const a2 = new StreamHasher(pool);
  const d1 = randomBytes(5 * BATCH);
  const d2 = randomBytes(4 * BATCH);
  t.same(await Promise.all([feed(d1, 65536, a1), feed(d2, 65536, a2)]), [digests(d1), digests(d2)], 'new streams work');
  t.equal(pool.load().length, 2, 'the dead worker was replaced on demand');
  t.notOk(pool.load().some((s) => s.threadId === dead), 'the dead worker is gone from the pool');
});

t.test('a worker killed while a digest is pending rejects the digest', async (t) => {
  const pool = new StreamHashPool({ threads: 1 });
  t.teardown(() => pool.terminate());
  const h = new StreamHasher(pool);
  h.update(randomBytes(2 * BATCH + 1));
  const p = h.digest();
  await pool.kill(h.threadId!);
  // Either the digest arrived before the kill or the kill fails it; never a hang.
  const r = await p.then(
    () => 'ok',
    (e: { code?: string }) => e.code,
  );
  t.ok(r === 'ok' || r === 'E_UNAVAILABLE', `settled: ${r}`);
});

t.test('dispose (abort) releases the worker; use after digest or dispose throws', async (t) => {
  const pool = new StreamHashPool({ threads: 1 });
  t.teardown(() => pool.terminate());
  const h = new StreamHasher(pool);
  h.update(randomBytes(3 * BATCH));
  t.same(
    pool.load().map((s) => s.streams),
    [1],
    'open stream holds the worker',
  );
  h.dispose();
  t.same(
    pool.load().map((s) => s.streams),
    [0],
    'released at once',
  );
  t.throws(() => h.update(Buffer.from('x')));
  const h2 = new StreamHasher(pool);
  h2.update(Buffer.from('abc'));
  t.same(await h2.digest(), digests(Buffer.from('abc')));
  await t.rejects(h2.digest());
  // The same thread serves the next stream; the dropped one left nothing behind in it.
  const d = Buffer.alloc(5 * BATCH, 9);
  t.same(await feed(d, 65536, new StreamHasher(pool)), digests(d));
  t.equal(pool.load().length, 1);
});

t.test('an idle pool does not keep the process alive', async (t) => {
  // A child that hashes a large body and then just returns must exit on its own.
  const { spawn } = await import('node:child_process');
  const src = new URL('../../../src/core/hash/stream-hasher.ts', import.meta.url).href;
  const code = `
    const { StreamHasher, StreamHashPool } = await import(${JSON.stringify(src)});
    const pool = new StreamHashPool({ threads: 2 });
    const a = new StreamHasher(pool); const b = new StreamHasher(pool);
    a.update(Buffer.alloc(3 << 20, 1)); b.update(Buffer.alloc(3 << 20, 2));
    await a.digest(); b.dispose();
    process.stderr.write('done ' + JSON.stringify(pool.load()) + '\\n');
  `;
  const child = spawn(process.execPath, [...process.execArgv, '--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exit = await new Promise<number | null>((r) => child.once('exit', r));
  t.equal(exit, 0, err);
  t.match(err, /done \[\{"threadId":\d+,"streams":0\},\{"threadId":\d+,"streams":0\}\]/);
});

t.test('an idle pool drops its spare batch buffers; a busy one reuses them', async (t) => {
  const pool = new StreamHashPool({ threads: 1 });
  t.teardown(() => pool.terminate());
  const d = randomBytes(8 * BATCH);
  t.same(await feed(d, 65536, new StreamHasher(pool)), digests(d));
  const first = pool.allocated;
  t.ok(first <= MAX_IN_FLIGHT + 1, `one stream needed ${first} buffers`);
  // Two streams back to back: the second reuses nothing (pool went idle) but stays bounded too.
  t.same(await feed(d, 65536, new StreamHasher(pool)), digests(d));
  t.ok(pool.allocated - first <= MAX_IN_FLIGHT + 1, 'fresh buffers after idle, still bounded');
  // While one stream stays open, another's buffers are recycled.
  const hold = new StreamHasher(pool);
  hold.update(randomBytes(INLINE_MAX));
  const before = pool.allocated;
  for (let i = 0; i < 3; i++) t.same(await feed(d, 65536, new StreamHasher(pool)), digests(d));
  t.ok(pool.allocated - before <= MAX_IN_FLIGHT + 1, `recycled while busy: ${pool.allocated - before} new buffers for 3 x ${d.length / BATCH} batches`);
  hold.dispose();
});

t.test('setInlineHashing: a large body is hashed as it streams, on this thread, holding nothing', async (t) => {
  setInlineHashing(true);
  t.teardown(() => setInlineHashing(false));
  const data = randomBytes(3 * INLINE_MAX + 12345);
  const h = new StreamHasher();
  for (let off = 0; off < data.length; off += 65536) {
    h.update(data.subarray(off, off + 65536));
    t.equal(h.threadId, undefined);
  }
  t.same(await h.digest(), digests(data));
  t.equal((h as unknown as { pending?: unknown[] }).pending, undefined, 'no chunk kept');
});

