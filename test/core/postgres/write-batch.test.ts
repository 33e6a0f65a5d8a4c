import t from 'tap';
import { createHash } from 'node:crypto';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { PgQueue } from '../../../src/core/postgres/pg-queue.js';
import { PgRecords } from '../../../src/core/postgres/pg-records.js';
import { PgWriteBatcher, writeBatcherOf } from '../../../src/core/postgres/pg-write-batch.js';
import type { StoredRecord } from '../../../src/core/types.js';
import type { JobCompletion } from '../../../src/core/entry-index/store.js';
import { storedRecord } from '../../helpers/media.js';
import { pgServer } from '../../helpers/postgres.js';

const pg = await pgServer(t);

const md5Of = (s: string): string => createHash('md5').update(s).digest('hex');

const rec = storedRecord;

async function fresh(): Promise<{ db: PgDatabase; records: PgRecords; queue: PgQueue }> {
  const db = await PgDatabase.open({ database: await pg.freshDatabase(), poolSize: 4 });
  t.teardown(() => db.close());
  return { db, records: new PgRecords(db), queue: new PgQueue(db) };
}

/** Distinct writing transactions (xmin) of the media rows and of the ended jobs. */
async function writers(db: PgDatabase): Promise<{ media: number; jobs: number }> {
  const [r] = await db.query<{ media: number; jobs: number }>(
    `SELECT (SELECT count(DISTINCT xmin::text)::int FROM mediacache.media) AS media,
            (SELECT count(DISTINCT xmin::text)::int FROM mediacache.jobs WHERE state = 'done') AS jobs`,
  );
  return r;
}

t.test('concurrent upserts and completions land in one transaction; every caller sees its write', async (t) => {
  const { db, records, queue } = await fresh();
  await queue.enqueue(Array.from({ length: 10 }, (_, i) => ({ url: `http://h.test/j${i}` })));
  const jobs = await queue.claim('n1', 10, { perHostLimit: 0, leaseMs: 60_000 });
  t.equal(jobs.length, 10);
  // A wide window so every call below is made before the batch is written.
  const b = new PgWriteBatcher(db, { windowMs: 200 });
  const recs = Array.from({ length: 20 }, (_, i) => rec(`r${i}`));
  const values = (r: StoredRecord): unknown[] => [r.md5, r.sha256, r.fileSize, r.mimeType, r.mediaType, null, null, r.extension, `images/${r.md5}.png`, r.fetchedAt, r.verifiedAt, null, null, '{"pinned":true}'];
  const out = await Promise.all([
    ...recs.map((r) => b.upsert(r.md5, values(r), r.urls)),
    ...jobs.map((j, i) => b.complete('n1', j.id, recs[i].md5)),
  ]);
  t.same(b.stats, { batches: 1, writes: 30, splits: 0 });
  t.same(await writers(db), { media: 1, jobs: 1 }, 'one transaction wrote every row');
  for (const r of recs) {
    const got = await records.get(r.md5);
    t.same(got && { urls: got.urls, pinned: got.pinned }, { urls: r.urls, pinned: true });
  }
  const done = out.slice(20) as Array<{ id: number; state: string; md5: string; done_by: string }>;
  t.same(
    done.map((d) => [String(d.id), d.state, d.md5, d.done_by]),
    jobs.map((j, i) => [j.id, 'done', recs[i].md5, 'n1']),
    'each completion resolves with its own row',
  );
  t.same((await records.stats()).totalFiles, 20, 'maintained totals count the batch');
  t.same(await queue.counts(), { queued: 0, running: 0, done: 10, failed: 0 });
});

t.test('in one batch, writes mean what they mean in call order', async (t) => {
  const { db, records, queue } = await fresh();
  const b = new PgWriteBatcher(db, { windowMs: 200 });
  const a = rec('a', { urls: ['http://h/1', 'http://h/2'] });
  const a2 = rec('a', { urls: ['http://h/3'], fileSize: 200 });
  const c = rec('c', { urls: ['http://h/2'] });
  await records.put(rec('old', { urls: ['http://h/3'] }));
  const [job] = await queue.enqueue([{ url: 'http://h.test/x' }]);
  await queue.claim('n1', 1, { perHostLimit: 0, leaseMs: 60_000 });
  const v = (r: StoredRecord): unknown[] => [r.md5, r.sha256, r.fileSize, r.mimeType, r.mediaType, null, null, r.extension, `images/${r.md5}.png`, r.fetchedAt, r.verifiedAt, null, null, '{}'];
  const [, , , first, second, stranger] = await Promise.all([
    b.upsert(a.md5, v(a), a.urls),
    b.upsert(c.md5, v(c), c.urls),
    b.upsert(a2.md5, v(a2), a2.urls),
    b.complete('n1', job.job.id, a.md5),
    b.complete('n1', job.job.id, a.md5),
    b.complete('n2', job.job.id, a.md5),
  ]);
  t.equal(b.stats.batches, 3, 'each further completion of one job waits for the next batch');
  const gotA = await records.get(a.md5);
  // h/3 keeps the association (seq) it had on `old`, as a lone upsert moving it would.
  t.same([gotA?.fileSize, gotA?.urls], [200, ['http://h/3', 'http://h/1']], 'later fields win; URLs add up; h/2 went to the later claimer');
  t.same((await records.get(c.md5))?.urls, ['http://h/2']);
  t.same((await records.get(md5Of('old')))?.urls, [], 'a URL moved off the record that had it');
  t.equal(first?.state, 'done');
  t.equal(second, undefined, 'a job already ended is not ended again');
  t.equal(stranger, undefined, 'a daemon not holding the lease cannot end the job');
});

t.test('a row the server refuses fails alone; its neighbours land', async (t) => {
  const { db, records } = await fresh();
  const b = new PgWriteBatcher(db, { windowMs: 200 });
  const good = [rec('g1'), rec('g2')];
  const v = (r: StoredRecord, width: unknown = null): unknown[] => [r.md5, r.sha256, r.fileSize, r.mimeType, r.mediaType, width, null, r.extension, `images/${r.md5}.png`, r.fetchedAt, r.verifiedAt, null, null, '{}'];
  const bad = rec('bad');
  const res = await Promise.allSettled([b.upsert(good[0].md5, v(good[0]), good[0].urls), b.upsert(bad.md5, v(bad, 'wide'), bad.urls), b.upsert(good[1].md5, v(good[1]), good[1].urls)]);
  t.same(
    res.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  t.match((res[1] as PromiseRejectedResult).reason, { code: 'E_UNAVAILABLE', retryable: false });
  t.equal(b.stats.splits, 1);
  t.ok(await records.get(good[0].md5));
  t.ok(await records.get(good[1].md5));
  t.equal(await records.get(bad.md5), undefined);
});

t.test('a batch cut off mid-way (connection failure) rejects every caller and writes nothing', async (t) => {
  const { db, records, queue } = await fresh();
  const [job] = await queue.enqueue([{ url: 'http://h.test/x' }]);
  await queue.claim('n1', 1, { perHostLimit: 0, leaseMs: 60_000 });
  // The job update, the batch's last statement, fails as a lost connection would (SQLSTATE class 08).
  await db.query(`CREATE FUNCTION mediacache.cut() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'connection cut' USING ERRCODE = '08006'; END $$`);
  await db.query('CREATE TRIGGER cut BEFORE UPDATE ON mediacache.jobs FOR EACH ROW WHEN (NEW.state = \'done\') EXECUTE FUNCTION mediacache.cut()');
  const b = new PgWriteBatcher(db, { windowMs: 200 });
  const recs = [rec('x1'), rec('x2')];
  const v = (r: StoredRecord): unknown[] => [r.md5, r.sha256, r.fileSize, r.mimeType, r.mediaType, null, null, r.extension, `images/${r.md5}.png`, r.fetchedAt, r.verifiedAt, null, null, '{}'];
  const res = await Promise.allSettled([...recs.map((r) => b.upsert(r.md5, v(r), r.urls)), b.complete('n1', job.job.id, recs[0].md5)]);
  t.same(
    res.map((r) => r.status),
    ['rejected', 'rejected', 'rejected'],
  );
  for (const r of res) t.match((r as PromiseRejectedResult).reason, { code: 'E_UNAVAILABLE', retryable: true });
  t.equal(b.stats.splits, 0, 'not retried one by one: the database is away');
  t.equal((await records.stats()).totalFiles, 0);
  t.same(await db.query('SELECT md5 FROM mediacache.media UNION ALL SELECT md5 FROM mediacache.media_url'), [], 'nothing half-written');
  t.equal((await queue.get(job.job.id))?.state, 'running');
  await db.query('DROP TRIGGER cut ON mediacache.jobs');
  t.equal((await queue.complete('n1', job.job.id, recs[0].md5))?.state, 'done', 'written once the database answers');
});

t.test('PgRecords.upsert and PgQueue.complete share the pool batcher; many concurrent callers, few transactions', async (t) => {
  const { db, records } = await fresh();
  const recs = Array.from({ length: 64 }, (_, i) => rec(`c${i}`, { urls: [`http://h/c${i}`, 'http://h/shared'] }));
  await Promise.all(recs.map((r) => records.upsert(r)));
  const b = writeBatcherOf(db);
  t.equal(b.stats.writes, 64, 'every upsert went through the batcher');
  t.ok(b.stats.batches < 64, `64 upserts in ${b.stats.batches} transactions`);
  t.equal((await records.stats()).totalFiles, 64);
  for (const [i, r] of recs.entries()) t.equal(await records.md5ForUrl(`http://h/c${i}`), r.md5);
  const shared = await records.md5ForUrl('http://h/shared');
  t.ok(recs.some((r) => r.md5 === shared), 'the shared URL belongs to one of them');
  t.equal((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM mediacache.media_url WHERE url = 'http://h/shared'"))[0].n, 1);
});


t.test('a write handed in as the previous batch resolves is written (not stranded)', async (t) => {
  const { db, records } = await fresh();
  const b = new PgWriteBatcher(db, { windowMs: 0 });
  const v = (r: StoredRecord): unknown[] => [r.md5, r.sha256, r.fileSize, r.mimeType, r.mediaType, null, null, r.extension, `images/${r.md5}.png`, r.fetchedAt, r.verifiedAt, null, null, '{}'];
  // Each write is made in the continuation of the previous one's promise, nothing else keeps the loop busy.
  for (let i = 0; i < 30; i++) {
    const r = rec(`s${i}`);
    await b.upsert(r.md5, v(r), r.urls);
  }
  await b.idle();
  t.equal((await records.stats()).totalFiles, 30);
  t.equal(b.stats.batches, 30);
});

t.test("a download's record and its job's completion are written by one transaction", async (t) => {
  const { db, records, queue } = await fresh();
  const [q] = await queue.enqueue([{ url: 'http://h.test/one' }]);
  await queue.claim('n1', 1, { perHostLimit: 0, leaseMs: 60_000 });
  const r = rec('one', { urls: ['http://h.test/one'] });
  const completion: JobCompletion = { nodeId: 'n1', jobId: q.job.id };
  await records.upsert(r, completion);
  t.equal(completion.written, true);
  t.same([completion.job?.state, completion.job?.md5, completion.job?.doneBy], ['done', r.md5, 'n1']);
  const [x] = await db.query<{ same: boolean }>(
    'SELECT (SELECT xmin::text FROM mediacache.media WHERE md5 = $1) = (SELECT xmin::text FROM mediacache.jobs WHERE id = $2) AS same',
    [r.md5, q.job.id],
  );
  t.equal(x.same, true, 'same transaction');
  // A job this node no longer holds: the record is written, the job is not ended by it.
  const [q2] = await queue.enqueue([{ url: 'http://h.test/two' }]);
  await queue.claim('n2', 1, { perHostLimit: 0, leaseMs: 60_000 });
  const r2 = rec('two', { urls: ['http://h.test/two'] });
  const lost: JobCompletion = { nodeId: 'n1', jobId: q2.job.id };
  await records.upsert(r2, lost);
  t.same([lost.written, lost.job], [true, undefined]);
  t.ok(await records.get(r2.md5));
  t.equal((await queue.get(q2.job.id))?.state, 'running', 'still the lease holder\'s');
});
