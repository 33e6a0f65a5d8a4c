/**
 * Two spawned daemons in cluster mode (one database, one content root) fed
 * overlapping URL lists through `add` on one and an inbox file on the other:
 * every URL is fetched and done once, each content is one file, and the
 * origin never sees more than --per-host requests at once from the cluster.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { countingRoutes, startOrigin } from '../helpers/origin.js';
import { mediaBody, md5Of } from '../helpers/media.js';
import { startDaemon, makeRoot } from '../helpers/daemon.js';
import { pgServer } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const pg = await pgServer(t);

t.test('add on one daemon, inbox on the other, overlapping: each URL done once, per-host limit held by the cluster', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const N = 24;
  const bodies = new Map<string, Buffer>();
  for (let i = 0; i < N; i++) bodies.set(`/j${i}.png`, mediaBody(`job${i}`, 9000));
  const { peak } = countingRoutes(origin, bodies, 100);
  const url = await pg.freshDatabase();
  const shared = makeRoot();
  t.teardown(() => fs.rmSync(shared, { recursive: true, force: true }));
  const cacheDir = path.join(shared, 'content');
  const args = ['--database', url, '--per-host', '2', '--concurrency', '4'];
  const a = await startDaemon(t, { cacheDir, args });
  const b = await startDaemon(t, { cacheDir, args });
  const urls = [...bodies.keys()].map((p) => origin.url(p));

  const added = (await a.rpc('add', { urls: urls.slice(0, 16) })).items;
  t.equal(added.length, 16);
  fs.writeFileSync(path.join(b.inboxes[0], 'batch.urls'), urls.slice(8).join('\n') + '\n');
  const report = path.join(b.inboxes[0], 'processed', 'batch.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 60_000, what: 'inbox report on b' });
  // A URL of the inbox file whose first job (from a's add) had already ended gets a second job,
  // answered from the cache: so at least N jobs, every one done, and one fetch per URL (below).
  await waitFor(
    async () => {
      const q = (await a.rpc('status', {})).cluster!.queue;
      return q.queued === 0 && q.running === 0 && q.done >= N;
    },
    { timeoutMs: 60_000, what: 'all jobs done' },
  );
  const lines = fs.readFileSync(report, 'utf8').trim().split('\n').filter((l) => /\tdone\t/.test(l));
  t.equal(lines.length, 16, 'every inbox line reported done (some ran on the other daemon)');

  for (const p of bodies.keys()) t.equal(origin.hits(p), 1, `${p} fetched once by the cluster`);
  t.ok(peak() <= 2, `the origin saw at most 2 requests at once from two daemons with --per-host 2 (saw ${peak()})`);
  t.same(fs.readdirSync(path.join(cacheDir, 'images')).sort(), [...bodies.values()].map((b) => `${md5Of(b)}.png`).sort(), 'one file per content');
  t.equal((await b.rpc('stats', {})).totalFiles, N, 'the database agrees with the files');
  const st = await b.rpc('status', {});
  const q = st.cluster!.queue;
  t.match(q, { queued: 0, running: 0, failed: 0 });
  t.ok(q.done >= N && q.done <= N + 8, `every job done (${q.done}: one per URL, plus one per overlapping URL re-added after its job ended)`);
  t.equal(st.cluster!.nodes.reduce((n, x) => n + x.done, 0), q.done, 'shares add up to the queue');
  const jobs = await a.rpc('jobs', { state: 'done', limit: 100 });
  t.equal(jobs.total, q.done, 'jobs lists the cluster');
  t.equal(new Set(jobs.jobs.map((j) => j.url)).size, N, 'every URL has a done job');
});
