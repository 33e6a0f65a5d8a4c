import t from 'tap';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { PgQueue, type PgJob } from '../../../src/core/postgres/pg-queue.js';
import { PgRecords } from '../../../src/core/postgres/pg-records.js';
import { storedRecord } from '../../helpers/media.js';
import { pgServer } from '../../helpers/postgres.js';
import { waitFor } from '../../helpers/wait.js';

const pg = await pgServer(t);

/** One "daemon": its own pool on the shared database. */
async function daemonOn(url: string): Promise<{ db: PgDatabase; queue: PgQueue }> {
  const db = await PgDatabase.open({ database: url, poolSize: 4 });
  t.teardown(() => db.close());
  return { db, queue: new PgQueue(db) };
}

const urls = (n: number, hosts: number, tag = 'f'): string[] =>
  Array.from({ length: n }, (_, i) => `http://h${i % hosts}.test:8080/${tag}${i}.png`);

t.test('500 jobs, 3 concurrent claimers: every job claimed exactly once and ended once', async (t) => {
  const url = await pg.freshDatabase();
  const daemons = await Promise.all([0, 1, 2].map(() => daemonOn(url)));
  const list = urls(500, 25);
  const queued = await daemons[0].queue.enqueue(list.map((u) => ({ url: u })));
  t.equal(queued.length, 500);
  t.ok(queued.every((q) => q.created));
  const claimedBy = new Map<string, string[]>();
  await Promise.all(
    daemons.map(async ({ queue }, i) => {
      const node = `node${i}`;
      for (;;) {
        const jobs = await queue.claim(node, 7, { perHostLimit: 4, leaseMs: 60_000 });
        if (jobs.length === 0) {
          if ((await queue.counts()).queued === 0) return;
          continue;
        }
        for (const j of jobs) {
          claimedBy.set(j.id, [...(claimedBy.get(j.id) ?? []), node]);
          t.equal(j.leaseOwner, node);
          const done = await queue.complete(node, j.id, 'd41d8cd98f00b204e9800998ecf8427e');
          if (done?.state !== 'done') t.fail(`complete of ${j.id} refused`);
        }
      }
    }),
  );
  t.equal(claimedBy.size, 500, 'every job claimed');
  t.ok([...claimedBy.values()].every((by) => by.length === 1), 'none claimed twice');
  const q = daemons[0].queue;
  t.same(await q.counts(), { queued: 0, running: 0, done: 500, failed: 0 });
  const shares = await q.shares();
  t.equal([...shares.values()].reduce((s, v) => s + v.done, 0), 500, 'shares add up');
  t.equal(shares.size, 3, 'all three daemons took part');
  t.ok([...shares.values()].every((s) => s.done > 0 && s.running === 0));
});

t.test('per-host limit holds across claimers that keep claiming and finishing', async (t) => {
  const url = await pg.freshDatabase();
  const daemons = await Promise.all([0, 1, 2].map(() => daemonOn(url)));
  const LIMIT = 3;
  await daemons[0].queue.enqueue(urls(90, 2, 'lim').map((u) => ({ url: u })));
  // Everyone grabs as much as it can at once: exactly the limit per host, cluster-wide.
  const grabbed = (
    await Promise.all(daemons.map(({ queue }, i) => queue.claim(`node${i}`, 5, { perHostLimit: LIMIT, leaseMs: 60_000 })))
  ).flat();
  const perHost = new Map<string, number>();
  for (const j of grabbed) perHost.set(j.host, (perHost.get(j.host) ?? 0) + 1);
  t.same([...perHost.values()], [LIMIT, LIMIT], `${LIMIT} per host, not ${LIMIT} per claimer`);
  t.same(await daemons[1].queue.claim('node1', 5, { perHostLimit: LIMIT, leaseMs: 60_000 }), [], 'nothing more while all slots are taken');
  for (const j of grabbed) await daemons[0].queue.release(j.leaseOwner!, [j.id]);
  // Then they churn: claim one, hold it a moment, finish it.
  const running = new Map<string, number>();
  let maxSeen = 0;
  let dbMax = 0;
  let ended = 0;
  const probe = daemons[0].db;
  await Promise.all(
    daemons.flatMap(({ queue }, i) =>
      // Two workers per daemon: six slots in all against 2 hosts x 3.
      [0, 1].map(async (w) => {
        const node = `node${i}`;
        while (ended < 90) {
          const [j] = await queue.claim(node, 1, { perHostLimit: LIMIT, leaseMs: 60_000 });
          if (!j) {
            await new Promise((r) => setImmediate(r));
            continue;
          }
          const k = (running.get(j.host) ?? 0) + 1;
          running.set(j.host, k);
          maxSeen = Math.max(maxSeen, k);
          const [row] = await probe.query<{ n: number }>(
            "SELECT max(c)::int AS n FROM (SELECT count(*) AS c FROM mediacache.jobs WHERE state = 'running' GROUP BY host) x",
          );
          dbMax = Math.max(dbMax, row.n ?? 0);
          await new Promise((r) => setTimeout(r, 2 + ((i * 2 + w) % 3)));
          running.set(j.host, running.get(j.host)! - 1);
          await queue.complete(node, j.id, 'd41d8cd98f00b204e9800998ecf8427e');
          ended++;
        }
      }),
    ),
  );
  t.equal(ended, 90);
  t.ok(maxSeen <= LIMIT, `at most ${LIMIT} running per host in the workers (saw ${maxSeen})`);
  t.ok(dbMax <= LIMIT, `at most ${LIMIT} running per host in the database (saw ${dbMax})`);
});

t.test('a lease that is not renewed is taken over; the old owner can no longer end the job', async (t) => {
  const url = await pg.freshDatabase();
  const [a, b] = await Promise.all([daemonOn(url), daemonOn(url)]);
  await a.queue.enqueue(urls(6, 3, 'lease').map((u) => ({ url: u })));
  const mine = await a.queue.claim('A', 3, { perHostLimit: 0, leaseMs: 400 });
  const held = await b.queue.claim('B', 3, { perHostLimit: 0, leaseMs: 60_000 });
  t.equal(mine.length, 3);
  t.equal(held.length, 3);
  t.same(await b.queue.claim('B', 3, { perHostLimit: 0, leaseMs: 60_000 }), [], "A's jobs are not free before the lease ends");
  // A is "killed": it never renews. B takes its jobs once the lease is over.
  const taken: PgJob[] = [];
  await waitFor(async () => {
    taken.push(...(await b.queue.claim('B', 3, { perHostLimit: 0, leaseMs: 60_000 })));
    return taken.length === 3;
  }, { what: 'take-over of expired leases' });
  t.same(taken.map((j) => j.id).sort(), mine.map((j) => j.id).sort());
  t.ok(taken.every((j) => j.attempts === 2 && j.leaseOwner === 'B'));
  t.equal(await a.queue.complete('A', mine[0].id, 'd41d8cd98f00b204e9800998ecf8427e'), undefined, 'stale owner refused');
  t.equal(await a.queue.fail('A', mine[1].id, { code: 'E_NETWORK', message: 'x' }), undefined);
  t.equal((await b.queue.complete('B', taken[0].id, 'd41d8cd98f00b204e9800998ecf8427e'))?.state, 'done');
  t.same(await a.queue.renewLeases('A', 1000), [], 'A holds nothing any more');
});

t.test('renewed leases are kept past their first expiry; too many expiries fail the job', async (t) => {
  const url = await pg.freshDatabase();
  const [a, b] = await Promise.all([daemonOn(url), daemonOn(url)]);
  await a.queue.enqueue([{ url: 'http://r.test/1' }]);
  const [job] = await a.queue.claim('A', 1, { perHostLimit: 0, leaseMs: 300 });
  const firstExpiry = job.leaseExpiresAt!;
  t.same(await a.queue.renewLeases('A', 60_000), [job.id]);
  await waitFor(async () => (await a.db.query<{ past: boolean }>('SELECT now() > $1::timestamptz AS past', [firstExpiry]))[0].past, {
    what: 'first lease expiry passing',
  });
  t.same(await b.queue.claim('B', 1, { perHostLimit: 0, leaseMs: 300 }), [], 'renewed lease still held');

  await a.queue.enqueue([{ url: 'http://r.test/poison' }]);
  let last: PgJob | undefined;
  for (let i = 0; i < 2; i++) {
    // reclaimExpired now: claim() itself looks for expired leases only once a second.
    last = await waitFor(async () => {
      await b.queue.reclaimExpired(2);
      return (await b.queue.claim('B', 1, { perHostLimit: 0, leaseMs: 1, maxAttempts: 2 }))[0];
    }, { what: `claim ${i + 1}` });
    t.equal(last.attempts, i + 1);
    await waitFor(async () => (await a.db.query<{ past: boolean }>('SELECT now() > $1::timestamptz AS past', [last!.leaseExpiresAt]))[0].past);
  }
  await b.queue.reclaimExpired(2);
  const dead = await a.queue.get(last!.id);
  t.equal(dead?.state, 'failed');
  t.equal(dead?.error?.code, 'E_ABORTED');
});

t.test('failures: retry after a delay on the database clock, or failed for good and retried by hand', async (t) => {
  const url = await pg.freshDatabase();
  const { queue } = await daemonOn(url);
  await queue.enqueue([{ url: 'http://f.test/1' }]);
  const [j] = await queue.claim('A', 1, { perHostLimit: 0, leaseMs: 60_000 });
  const back = await queue.fail('A', j.id, { code: 'E_HTTP', message: '503', status: 503 }, { retryInMs: 400 });
  t.equal(back?.state, 'queued');
  t.ok(back?.notBefore, 'not before set');
  t.ok(Date.parse(back!.notBefore!) - Date.parse(back!.updatedAt) >= 400);
  t.same(await queue.claim('A', 1, { perHostLimit: 0, leaseMs: 60_000 }), [], 'not yet due');
  const again = await waitFor(async () => (await queue.claim('A', 1, { perHostLimit: 0, leaseMs: 60_000 }))[0], { what: 'retry due' });
  t.equal(again.id, j.id);
  t.equal(again.attempts, 2);
  t.same(again.error, { code: 'E_HTTP', message: '503', status: 503 }, 'last error kept while retrying');
  const failed = await queue.fail('A', j.id, { code: 'E_HTTP', message: '404', status: 404 });
  t.equal(failed?.state, 'failed');
  t.equal(failed?.doneBy, 'A');
  t.same(await queue.counts(), { queued: 0, running: 0, done: 0, failed: 1 });
  const retried = await queue.retryFailed();
  t.same(retried.map((r) => [r.id, r.state, r.attempts]), [[j.id, 'queued', 0]]);
  t.equal(retried[0].error, undefined);
});

t.test('dedupe: a URL queued or running is one job, across daemons; ended, it can be queued again', async (t) => {
  const url = await pg.freshDatabase();
  const [a, b] = await Promise.all([daemonOn(url), daemonOn(url)]);
  const list = urls(200, 10, 'dup');
  const [ra, rb] = await Promise.all([
    a.queue.enqueue(list.map((u) => ({ url: u, source: 'inbox-a' })), { priority: 10 }),
    b.queue.enqueue([...list].reverse().map((u) => ({ url: u })), { priority: 0 }),
  ]);
  t.equal(ra.length, 200);
  t.equal(rb.length, 200);
  const idsA = new Map(ra.map((r) => [r.job.url, r.job.id]));
  t.ok(rb.every((r) => idsA.get(r.job.url) === r.job.id), 'same job for the same URL');
  t.equal(ra.filter((r) => r.created).length + rb.filter((r) => r.created).length, 200, 'each created once');
  t.equal((await a.queue.counts()).queued, 200);
  const q = await a.queue.list({ state: 'queued', limit: 1000 });
  t.ok(q.every((j) => j.priority === 0), 'the better priority wins');

  const within = await a.queue.enqueue([{ url: 'http://d.test/x' }, { url: 'http://d.test/x' }]);
  t.equal(within[0].job.id, within[1].job.id);
  const [j] = await a.queue.claim('A', 1, { perHostLimit: 0, leaseMs: 60_000 });
  t.ok(j);
  const running = await b.queue.enqueue([{ url: j.url }]);
  t.same([running[0].created, running[0].job.id, running[0].job.state], [false, j.id, 'running']);
  await a.queue.complete('A', j.id, 'd41d8cd98f00b204e9800998ecf8427e');
  const fresh = await b.queue.enqueue([{ url: j.url }]);
  t.equal(fresh[0].created, true);
  t.not(fresh[0].job.id, j.id);
});

t.test('priority, Retry-After pauses, release, cancel, list and prune', async (t) => {
  const url = await pg.freshDatabase();
  const { queue } = await daemonOn(url);
  await queue.enqueue([{ url: 'http://slow.test/1' }, { url: 'http://slow.test/2' }], { priority: 10 });
  await queue.enqueue([{ url: 'http://fast.test/1' }], { priority: 0 });
  const order = await queue.enqueue(['http://o.test/3', 'http://o.test/1', 'http://o.test/2'].map((u) => ({ url: u })), { priority: 20 });
  const ids = order.map((o) => Number(o.job.id));
  t.ok(ids[0] < ids[1] && ids[1] < ids[2], 'ids follow the input order (FIFO), whatever order rows were inserted in');
  const [first] = await queue.claim('A', 1, { perHostLimit: 0, leaseMs: 60_000 });
  t.equal(first.url, 'http://fast.test/1', 'lower priority number first');
  await queue.release('A');
  await queue.deferHost('fast.test', 60_000);
  await queue.deferHost('fast.test', 10); // never shortens a pause
  const got = await queue.claim('A', 3, { perHostLimit: 0, leaseMs: 60_000 });
  t.same(got.map((j) => j.url), ['http://slow.test/1', 'http://slow.test/2', 'http://o.test/3'], 'paused host skipped');
  t.equal(await queue.release('A', [got[0].id, got[2].id]), 2);
  t.same((await queue.list({ state: 'running' })).map((j) => j.id), [got[1].id]);
  t.same((await queue.list({ state: 'queued', limit: 2 })).map((j) => j.url), ['http://fast.test/1', 'http://slow.test/1']);
  const cancelled = await queue.cancel([got[0].id, got[1].id]);
  t.same(cancelled.map((j) => [j.state, j.error?.code]), [['failed', 'E_ABORTED'], ['failed', 'E_ABORTED']]);
  t.same(await queue.renewLeases('A', 1000), [], 'a cancelled running job is no longer held');
  t.same(await queue.counts(), { queued: 4, running: 0, done: 0, failed: 2 });
  t.equal((await queue.list({ limit: 10 })).length, 6);
  t.equal(await queue.prune({ keepEnded: 1, maxAgeMs: 3_600_000 }), 1, 'keeps the newest ended job');
  t.equal(await queue.prune({ keepEnded: 10, maxAgeMs: 0 }), 1, 'then the old one');
  t.same(await queue.counts(), { queued: 4, running: 0, done: 0, failed: 0 });
});

t.test('a claimed job says whether its URL already maps to a record (the download skips its cache-hit lookup when not)', async (t) => {
  const url = await pg.freshDatabase();
  const { db, queue } = await daemonOn(url);
  const cached = 'http://m.test/cached.png';
  const other = 'http://m.test/other.png';
  await new PgRecords(db).put(storedRecord('mapped', { urls: [cached] }));
  await queue.enqueue([{ url: cached }, { url: other }]);
  const got = await queue.claim('A', 2, { perHostLimit: 0, leaseMs: 60_000 });
  t.same(
    got.map((j) => [j.url, j.urlMapped]),
    [
      [cached, true],
      [other, false],
    ],
  );
});

t.test('a large enqueue leaves the planner knowing the queue is long (claims read the queue index in order, not the whole queue)', async (t) => {
  const url = await pg.freshDatabase();
  const { db, queue } = await daemonOn(url);
  const reltuples = async (): Promise<number> =>
    Number((await db.query<{ n: number }>("SELECT reltuples::float8 AS n FROM pg_class WHERE oid = 'mediacache.jobs'::regclass"))[0]!.n);
  await queue.enqueue(urls(10, 1, 'few').map((u) => ({ url: u })));
  t.ok((await reltuples()) < 10, 'a few jobs: no statistics taken yet');
  await queue.enqueue(urls(1500, 3, 'many').map((u) => ({ url: u })));
  t.ok((await reltuples()) >= 1500, 'statistics count the queue after 1,000 inserts');
  const plan = (await db.query<{ 'QUERY PLAN': string }>(
    "EXPLAIN SELECT id, host, priority FROM mediacache.jobs WHERE state = 'queued' AND next_attempt_at <= now() ORDER BY priority, id LIMIT 200",
  )).map((r) => r['QUERY PLAN']).join('\n');
  t.match(plan, /Index (Only )?Scan using jobs_queued/, 'the queue index, in order');
  t.notMatch(plan, /Sort/, 'no sort of the whole queue');
});

t.test("a claim's transaction commits without waiting for the WAL flush; other writes still wait", async (t) => {
  const url = await pg.freshDatabase();
  const { db, queue } = await daemonOn(url);
  await queue.enqueue([{ url: 'http://s.test/a.png' }]);
  const inClaim = await db.tx(async (c) => {
    const claimed = (await c.query("SELECT id FROM mediacache.claim_jobs('A', 1, 4, 60000)")).rows;
    return { claimed: claimed.length, mode: (await c.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]!.synchronous_commit };
  });
  t.same(inClaim, { claimed: 1, mode: 'off' });
  const after = await db.tx(async (c) => (await c.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]!.synchronous_commit);
  t.equal(after, 'on', 'only for that transaction');
});

t.test('a VACUUM holding the jobs table does not hold up an enqueue: statistics wait for the next one', async (t) => {
  const url = await pg.freshDatabase();
  const { db, queue } = await daemonOn(url);
  const other = await daemonOn(url);
  const reltuples = async (): Promise<number> =>
    Number((await db.query<{ n: number }>("SELECT reltuples::float8 AS n FROM pg_class WHERE oid = 'mediacache.jobs'::regclass"))[0]!.n);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  // The lock a VACUUM or ANALYZE holds (inserts still go through).
  const holder = other.db.tx(async (c) => {
    await c.query('LOCK TABLE mediacache.jobs IN SHARE UPDATE EXCLUSIVE MODE');
    locked();
    await released;
  });
  await isLocked;
  const t0 = Date.now();
  const out = await queue.enqueue(urls(1500, 3, 'held').map((u) => ({ url: u })));
  t.equal(out.filter((e) => e.created).length, 1500, 'every job queued');
  t.ok(Date.now() - t0 < 10_000, 'not held until the lock went');
  t.ok((await reltuples()) < 1500, 'no statistics while the table was held');
  release();
  await holder;
  await queue.enqueue([{ url: 'http://held.test/one-more.png' }]);
  t.ok((await reltuples()) >= 1500, 'taken by the next enqueue');
});

t.test("a host at its limit with a long queue: the other hosts' jobs behind it are claimed without reading that queue", async (t) => {
  const url = await pg.freshDatabase();
  const { db, queue } = await daemonOn(url);
  await queue.enqueue(Array.from({ length: 3000 }, (_, i) => ({ url: `http://full.test/${i}.png` })));
  await queue.enqueue(Array.from({ length: 5 }, (_, i) => ({ url: `http://other.test/${i}.png` })));
  await queue.enqueue([{ url: 'http://paused.test/p.png' }]);
  await queue.deferHost('paused.test', 60_000);
  const first = await queue.claim('A', 2, { perHostLimit: 2, leaseMs: 60_000 });
  t.same(first.map((j) => j.host), ['full.test', 'full.test'], 'the head of the queue first');
  const { rows, read } = await db.tx(async (c) => {
    const got = (await c.query<{ host: string; url: string }>("SELECT host, url FROM mediacache.claim_jobs('B', 10, 2, 60000)")).rows;
    const st = await c.query<{ n: string }>("SELECT (coalesce(idx_tup_fetch, 0) + seq_tup_read)::text AS n FROM pg_stat_xact_user_tables WHERE schemaname = 'mediacache' AND relname = 'jobs'");
    return { rows: got, read: Number(st.rows[0]!.n) };
  });
  t.same(rows.map((r) => r.url).sort(), ['http://other.test/0.png', 'http://other.test/1.png'], "the other host's best jobs, up to its limit; none of the full or paused host");
  t.ok(read < 300, `rows of jobs read: ${read} (the full host has 2,998 queued)`);
  const none = await queue.claim('C', 10, { perHostLimit: 2, leaseMs: 60_000 });
  t.same(none, [], 'every host with queued work at its limit or paused: nothing');
});
