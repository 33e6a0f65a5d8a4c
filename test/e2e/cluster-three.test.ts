/**
 * Three spawned daemons in cluster mode on one database and one content
 * root, each fed an inbox file and an `mcctl add`, the six lists overlapping
 * and some URLs serving the same content: every URL ends done and is
 * fetched exactly once (a URL queued again after its job ended is a cache
 * hit), each distinct content is one file, and the database (media,
 * media_url, jobs) agrees with the files on disk.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { countingRoutes, startOrigin } from '../helpers/origin.js';
import { mediaBody, md5Of } from '../helpers/media.js';
import { startDaemon, makeRoot, type DaemonHandle } from '../helpers/daemon.js';
import { pgServer } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { mcctl } from './mcctl-helpers.js';
import { parseReport } from '../../src/daemon/inbox/report.js';

const pg = await pgServer(t);

const URLS = 30;
const CONTENTS = 20;
const PER_HOST = 3;

t.test('three daemons, inboxes and mcctl add with overlapping lists: each URL done once, one file per content, database = files', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  // URL i serves content i % CONTENTS: URLs 20..29 repeat the content of 0..9 under other names.
  const bodies = Array.from({ length: CONTENTS }, (_, i) => mediaBody(`three-${i}`, 9000 + i));
  const paths = Array.from({ length: URLS }, (_, i) => `/t${i}.png`);
  const { peak } = countingRoutes(origin, new Map(paths.map((p, i) => [p, bodies[i % CONTENTS]!])), 60);
  const urls = paths.map((p) => origin.url(p));
  const range = (from: number, to: number): string[] => urls.slice(from, to);

  const dbUrl = await pg.freshDatabase();
  // postgresql://postgres@/<name>?host=… (no host part, which URL refuses)
  const dbName = /@\/([^?]+)/.exec(dbUrl)![1]!;
  const shared = makeRoot();
  t.teardown(() => fs.rmSync(shared, { recursive: true, force: true }));
  const cacheDir = path.join(shared, 'content');
  const args = ['--database', dbUrl, '--per-host', String(PER_HOST), '--concurrency', '2'];
  const daemons: DaemonHandle[] = [];
  // One after the other: the first creates the schema, the others find it (the migration lock is tested elsewhere).
  for (let i = 0; i < 3; i++) daemons.push(await startDaemon(t, { cacheDir, args }));

  // Each daemon: one mcctl add and one inbox file; together they cover every URL, most of them twice or more.
  const plan: Array<{ add: string[]; inbox: string[] }> = [
    { add: range(0, 12), inbox: [...range(24, 30), ...range(0, 4)] },
    { add: range(8, 20), inbox: range(16, 26) },
    { add: [...range(18, 30), ...range(2, 6)], inbox: range(4, 14) },
  ];
  const adds = daemons.map((d, i) => mcctl(d, ['add', ...plan[i]!.add, '--json']));
  daemons.forEach((d, i) => fs.writeFileSync(path.join(d.inboxes[0]!, `list-${i}.urls`), plan[i]!.inbox.join('\n') + '\n'));
  for (const [i, r] of (await Promise.all(adds)).entries()) t.equal(r.code, 0, `mcctl add on daemon ${i}: ${r.stderr}`);

  const reports = daemons.map((d, i) => path.join(d.inboxes[0]!, 'processed', `list-${i}.urls.report.tsv`));
  await waitFor(() => reports.every((r) => fs.existsSync(r)), { timeoutMs: 60_000, what: 'the three inbox reports' });
  // The adds have returned and the reports are written (after all their jobs ended): nothing more is queued.
  const open = async (): Promise<number> =>
    Number((await pg.sql<{ n: string }>(`SELECT count(*)::text AS n FROM mediacache.jobs WHERE state IN ('queued', 'running')`, [], dbName))[0]!.n);
  await waitFor(async () => (await open()) === 0, { timeoutMs: 60_000, what: 'no job queued or running' });

  // Every inbox line done, with the md5 of the content its URL serves.
  const md5OfUrl = new Map(urls.map((u, i) => [u, md5Of(bodies[i % CONTENTS]!)]));
  reports.forEach((r, i) => {
    const rows = parseReport(fs.readFileSync(r, 'utf8'));
    t.equal(rows.length, plan[i]!.inbox.length, `report ${i}: one row per line`);
    t.ok(
      rows.every((row) => row.outcome === 'done' && row.result === md5OfUrl.get(row.url)),
      `report ${i}: every line done with its content's md5`,
    );
  });

  // Each URL fetched exactly once by the cluster, under the cluster-wide per-host limit.
  for (const p of paths) t.equal(origin.hits(p), 1, `${p} fetched once`);
  t.ok(peak() <= PER_HOST, `the origin saw at most ${PER_HOST} requests at once from three daemons (saw ${peak()})`);
  // A URL queued again after its job ended (an inbox line, which queues without looking at the cache)
  // gets a new job that is a cache hit; at most one job per URL is open at a time (a unique index).
  const jobs = await pg.sql<{ url: string; states: string[]; md5s: string[] }>(
    'SELECT url, array_agg(DISTINCT state) AS states, array_agg(DISTINCT md5) AS md5s FROM mediacache.jobs GROUP BY url',
    [],
    dbName,
  );
  t.equal(jobs.length, URLS, 'every URL was queued');
  t.ok(
    jobs.every((j) => j.states.length === 1 && j.states[0] === 'done' && j.md5s.length === 1 && j.md5s[0] === md5OfUrl.get(j.url)),
    'every job of every URL done, with the content the URL serves',
  );
  const total = Number((await pg.sql<{ n: string }>('SELECT count(*)::text AS n FROM mediacache.jobs', [], dbName))[0]!.n);
  // status reads the queue totals once a second.
  await waitFor(async () => (await daemons[1]!.rpc('status', {})).cluster!.queue.done === total, { timeoutMs: 10_000, what: 'status showing every job done' });
  const st = await daemons[1]!.rpc('status', {});
  t.same(st.cluster!.queue, { queued: 0, running: 0, done: total, failed: 0 }, 'status: the cluster queue is settled, nothing failed');
  t.equal(st.cluster!.nodes.filter((n) => n.alive).length, 3, 'three daemons alive');
  t.equal(st.cluster!.nodes.reduce((n, x) => n + x.done, 0), total, 'the daemons’ shares add up to the queue');

  // One file per distinct content, and the database agrees with the files.
  const files = fs.readdirSync(path.join(cacheDir, 'images')).sort();
  t.same(files, bodies.map((b) => `${md5Of(b)}.png`).sort(), 'one file per distinct content');
  const media = await pg.sql<{ md5: string; size: string; storage_path: string }>(
    'SELECT md5, size::text AS size, storage_path FROM mediacache.media ORDER BY md5',
    [],
    dbName,
  );
  t.equal(media.length, CONTENTS, 'one media row per content');
  for (const m of media) {
    const p = path.join(cacheDir, ...m.storage_path.split('/'));
    t.equal(fs.statSync(p, { throwIfNoEntry: false })?.size, Number(m.size), `${m.storage_path}: the file is there with the recorded size`);
  }
  const mapped = await pg.sql<{ url: string; md5: string }>('SELECT url, md5 FROM mediacache.media_url', [], dbName);
  t.equal(mapped.length, URLS, 'every URL is in the URL map');
  t.ok(
    mapped.every((r) => r.md5 === md5OfUrl.get(r.url)),
    'each URL maps to the content it serves',
  );
  for (const d of daemons) t.equal((await d.rpc('stats', {})).totalFiles, CONTENTS, `stats on ${path.basename(d.root)} agree`);
  // No partial downloads left in any host's tmp folder.
  const leftovers = fs.readdirSync(path.join(cacheDir, '.tmp'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  t.same(
    leftovers.map((e) => e.name),
    [],
    'nothing left in .tmp/',
  );
});
