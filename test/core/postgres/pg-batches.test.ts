/**
 * Inbox batches in PostgreSQL: the rows (PgBatches) and the inbox's store on
 * them (PgBatchStore): one claim per file among daemons, ownership by node
 * id, a restarted daemon finding its own batches and claims, jobs linked to
 * their batch so a prune keeps them until the report.
 */
import t from 'tap';
import { PgBatches } from '../../../src/core/postgres/pg-batches.js';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { PgQueue } from '../../../src/core/postgres/pg-queue.js';
import { PgBatchStore, sharedBatchIdOf } from '../../../src/daemon/inbox/batch-store.js';
import type { BatchRecord } from '../../../src/daemon/jobs/job-store.js';
import { pgServer } from '../../helpers/postgres.js';

const pg = await pgServer(t);

async function open(url: string): Promise<PgDatabase> {
  const db = await PgDatabase.open({ database: url, poolSize: 3 });
  t.teardown(() => db.close());
  return db;
}

const ident = { size: 120, mtimeMs: 1_700_000_000_123.456, dev: 2049, ino: 77 };

function record(id: string, over: Partial<BatchRecord> = {}): BatchRecord {
  return {
    id,
    ident,
    inbox: '/in',
    sourcePath: '/in/x.urls',
    processedPath: '/in/processed/x.urls',
    state: 'enqueued',
    createdAt: new Date().toISOString(),
    lines: [],
    ...over,
  };
}

t.test('the shared batch id ignores where the folder is mounted, not what the file is', async (t) => {
  const a = sharedBatchIdOf('x.urls', ident);
  t.match(a, /^[0-9a-f]{32}$/);
  t.equal(sharedBatchIdOf('x.urls', { ...ident, dev: 99 }), a, 'another machine (device number) computes the same id');
  t.not(sharedBatchIdOf('y.urls', ident), a);
  t.not(sharedBatchIdOf('x.urls', { ...ident, ino: 78 }), a);
  t.not(sharedBatchIdOf('x.urls', { ...ident, mtimeMs: ident.mtimeMs + 1 }), a);
  t.not(sharedBatchIdOf('x.urls', { ...ident, size: 121 }), a);
});

t.test('two daemons claim one file: exactly one reads it; only the owner sees the batch', async (t) => {
  const db = await open(await pg.freshDatabase());
  const rows = new PgBatches(db);
  const a = new PgBatchStore(rows, 'node-a');
  const b = new PgBatchStore(rows, 'node-b');
  await a.load();
  await b.load();
  const id = sharedBatchIdOf('x.urls', ident);
  // Both at once, as two daemons watching one folder do.
  const [ca, cb] = await Promise.all([a.claim(record(id)), b.claim(record(id, { inbox: '/mnt/in', sourcePath: '/mnt/in/x.urls' }))]);
  t.same([ca, cb].filter(Boolean).length, 1, 'one claim wins');
  const [owner, other] = ca ? [a, b] : [b, a];
  t.equal(await owner.claim(record(id)), true, "the owner's claim holds when asked again");
  t.equal(await other.claim(record(id)), false, 'the other is refused again');
  const stored = await rows.get(id);
  t.match(stored, { id, key: id, state: 'taking', lines: [], ident, nodeId: ca ? 'node-a' : 'node-b' });
  t.equal(owner.batch(id), undefined, 'a claim is not a recorded batch yet');
  t.same(owner.claims().map((c) => c.id), [id]);

  const queue = new PgQueue(db);
  const jobs = await queue.enqueue([{ url: 'http://b.test/1' }, { url: 'http://b.test/2' }], { priority: 10 });
  const lines: BatchRecord['lines'] = [
    [1, 'http://b.test/1', jobs[0].job.id, null],
    [2, 'http://b.test/2', jobs[1].job.id, null],
    [3, 'junk', null, 'E_INVALID_URL'],
  ];
  await owner.save(record(id, { lines }));
  t.match(await rows.get(id), { state: 'enqueued', lines }, 'the lines are durable in the row');
  t.same(owner.claims(), [], 'the claim became the batch');
  t.equal(owner.batch(id)?.lines.length, 3);
  t.equal(other.batch(id), undefined, "the other daemon's mirror never holds it");
  t.same((await queue.getMany([jobs[0].job.id, jobs[1].job.id])).map((j) => j.batchId), [id, id], 'jobs are linked to their batch');
  const [j] = await queue.claim('node-a', 1, { perHostLimit: 0, leaseMs: 60_000 });
  await queue.complete('node-a', j.id, 'd41d8cd98f00b204e9800998ecf8427e');
  t.equal(await queue.prune({ keepEnded: 0, maxAgeMs: 0 }), 0, 'a prune keeps the ended job the unreported batch names');

  await owner.save({ ...owner.batch(id)!, state: 'moved' });
  // A restart of the owner: a new store on the same node id finds it.
  const again = new PgBatchStore(rows, ca ? 'node-a' : 'node-b');
  await again.load();
  t.match(again.batches(), [{ id, state: 'moved', lines, ident, sourcePath: ca ? '/in/x.urls' : '/mnt/in/x.urls' }]);
  await again.delete(id);
  t.equal(await rows.get(id), undefined, 'the reported batch is gone');
  t.equal(again.batch(id), undefined);
  t.equal(await queue.prune({ keepEnded: 0, maxAgeMs: 0 }), 1, 'then its ended job is prunable');
  t.equal(await other.claim(record(id)), true, 'once reported, the key is free again');
});

t.test('a claim cut short by a crash: the restarted owner still holds it, and can release it', async (t) => {
  const db = await open(await pg.freshDatabase());
  const rows = new PgBatches(db);
  const a = new PgBatchStore(rows, 'node-a');
  await a.load();
  t.equal(await a.claim(record('c1')), true);
  const restarted = new PgBatchStore(rows, 'node-a');
  await restarted.load();
  t.same(restarted.claims().map((c) => [c.id, c.ident]), [['c1', ident]]);
  t.same(restarted.batches(), []);
  t.equal(await restarted.claim(record('c1')), true, 'its own claim is still its own');
  const b = new PgBatchStore(rows, 'node-b');
  t.equal(await b.claim(record('c1')), false, 'and not anyone else’s');
  await restarted.release('c1');
  t.equal(await rows.get('c1'), undefined);
  t.equal(await b.claim(record('c1')), true, 'released: another daemon may take the file');
});

t.test('a refused file keeps its reason; rows round-trip through save', async (t) => {
  const db = await open(await pg.freshDatabase());
  const rows = new PgBatches(db);
  const a = new PgBatchStore(rows, 'node-a');
  await a.load();
  const r = record('r1', { refused: { code: 'E_TOO_LARGE', reason: 'file is 99 bytes; the limit is 10' } });
  t.equal(await a.claim(r), true);
  await a.save(r);
  const restarted = new PgBatchStore(rows, 'node-a');
  await restarted.load();
  t.match(restarted.batch('r1'), { refused: { code: 'E_TOO_LARGE', reason: 'file is 99 bytes; the limit is 10' }, lines: [], state: 'enqueued' });
  await rows.setState('r1', 'moved');
  t.equal((await rows.get('r1'))?.state, 'moved');
  await t.rejects(db.query("UPDATE mediacache.batches SET state = 'lost' WHERE id = 'r1'"), 'the state check still holds');
});
