import t from 'tap';
import { PgBatches } from '../../../src/core/postgres/pg-batches.js';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { PgNodes, SWEEP_LOCK } from '../../../src/core/postgres/pg-nodes.js';
import { PgQueue } from '../../../src/core/postgres/pg-queue.js';
import { pgServer } from '../../helpers/postgres.js';
import { waitFor } from '../../helpers/wait.js';

const pg = await pgServer(t);

async function open(url: string): Promise<PgDatabase> {
  const db = await PgDatabase.open({ database: url, poolSize: 3 });
  t.teardown(() => db.close());
  return db;
}

const dbNow = async (db: PgDatabase): Promise<number> => (await db.query<{ t: Date }>('SELECT now() AS t'))[0].t.getTime();

t.test('daemons register, stay alive while they beat, drop out when they stop or go quiet', async (t) => {
  const db = await open(await pg.freshDatabase());
  const nodes = new PgNodes(db);
  await nodes.register({ id: 'a', hostName: 'm1', pid: 11, version: '0.1.0', info: { perHost: 4 } });
  await nodes.register({ id: 'b', hostName: 'm2', pid: 22 });
  await nodes.register({ id: 'c', hostName: 'm2', pid: 33 });
  let list = await nodes.list(60_000);
  t.same(list.map((n) => [n.id, n.alive]), [['a', true], ['b', true], ['c', true]]);
  t.same(list[0].info, { perHost: 4 });
  t.equal(list[0].version, '0.1.0');
  await nodes.stop('c');
  const since = await dbNow(db);
  // "b" goes quiet; "a" keeps beating until b's heartbeat is older than the alive window.
  await waitFor(async () => {
    t.equal(await nodes.heartbeat('a'), true);
    return (await dbNow(db)) - since > 300;
  });
  list = await nodes.list(250);
  t.same(list.map((n) => [n.id, n.alive]), [['a', true], ['b', false], ['c', false]]);
  t.ok(list.find((n) => n.id === 'c')!.stoppedAt);
  await nodes.register({ id: 'c', hostName: 'm2', pid: 44 });
  t.same((await nodes.list(250)).find((n) => n.id === 'c')!.pid, 44, 'a restarted daemon rejoins under its id');
  t.equal(await nodes.heartbeat('zz'), false, 'unknown node: register again');
  t.equal(await nodes.forget(0), 3);
});

t.test('one sweep lock for the cluster: exclusive, renewable, taken over after expiry', async (t) => {
  const url = await pg.freshDatabase();
  const dbs = await Promise.all([0, 1, 2].map(() => open(url)));
  const got = await Promise.all(dbs.map((db, i) => new PgNodes(db).tryLock(SWEEP_LOCK, `n${i}`, 400)));
  t.equal(got.filter(Boolean).length, 1, 'exactly one holder');
  const holder = `n${got.indexOf(true)}`;
  const other = holder === 'n0' ? 'n1' : 'n0';
  const nodes = new PgNodes(dbs[0]);
  t.equal((await nodes.lockHolder(SWEEP_LOCK))?.owner, holder);
  t.equal(await nodes.tryLock(SWEEP_LOCK, holder, 400), true, 'the holder renews');
  t.equal(await nodes.tryLock(SWEEP_LOCK, other, 400), false);
  t.equal(await nodes.unlock(SWEEP_LOCK, other), false, 'only the holder unlocks');
  // The holder dies without unlocking: the lease runs out and another node takes it.
  await waitFor(() => nodes.tryLock(SWEEP_LOCK, other, 60_000), { what: 'lock expiry' });
  t.equal((await nodes.lockHolder(SWEEP_LOCK))?.owner, other);
  t.equal(await nodes.tryLock(SWEEP_LOCK, holder, 400), false, 'the old holder cannot take it back');
  t.equal(await nodes.unlock(SWEEP_LOCK, other), true);
  t.equal(await nodes.lockHolder(SWEEP_LOCK), undefined);
});

t.test('inbox batches: one row per file content, pending jobs counted, jobs outlive the batch', async (t) => {
  const db = await open(await pg.freshDatabase());
  const batches = new PgBatches(db);
  const queue = new PgQueue(db);
  const b = { id: 'b1', key: 'k1', nodeId: 'a', inbox: '/in', sourcePath: '/in/x.urls', processedPath: '/in/processed/x.urls', state: 'enqueued' as const, lines: [] };
  const first = await batches.create(b);
  t.equal(first.created, true);
  const jobs = await queue.enqueue([{ url: 'http://b.test/1' }, { url: 'http://b.test/2' }], { batchId: 'b1', priority: 10 });
  await db.query('UPDATE mediacache.batches SET lines = $2 WHERE id = $1', [
    'b1',
    JSON.stringify([[1, 'http://b.test/1', jobs[0].job.id, null], [2, 'http://b.test/2', jobs[1].job.id, null], [3, 'junk', null, 'E_INVALID_URL']]),
  ]);
  const again = await batches.create({ ...b, id: 'b2' });
  t.same([again.created, again.batch.id], [false, 'b1'], 'same key: the batch already there');
  t.equal((await batches.get('b1'))?.lines.length, 3);
  t.equal(await batches.pendingJobs('b1'), 2);
  const [j] = await queue.claim('a', 1, { perHostLimit: 0, leaseMs: 60_000 });
  await queue.complete('a', j.id, 'd41d8cd98f00b204e9800998ecf8427e');
  t.equal(await batches.pendingJobs('b1'), 1);
  t.equal(await queue.prune({ keepEnded: 0, maxAgeMs: 0 }), 0, 'a job a batch reports on is kept');
  await batches.setState('b1', 'moved');
  t.same((await batches.list('a')).map((x) => [x.id, x.state]), [['b1', 'moved']]);
  t.same(await batches.list('other'), []);
  await batches.delete('b1');
  t.equal((await queue.get(j.id))?.batchId, undefined);
  t.equal(await queue.prune({ keepEnded: 0, maxAgeMs: 0 }), 1, 'then it can go');
});
