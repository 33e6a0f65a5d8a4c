/**
 * Inbox batches of cluster daemons live in mediacache.batches, not in the
 * daemon's state dir:
 * - a file is recorded in the database before it leaves the inbox (with the
 *   database stopped, the file stays), its report is written when its jobs
 *   end, and the row is deleted then;
 * - a daemon killed (-9) after the move, before its jobs ended, restarted:
 *   the report is still written, complete, once;
 * - two daemons watching one inbox folder: each file is taken by one of
 *   them (one row, one report), every URL done once.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { heldRoute, startOrigin, type Origin } from '../helpers/origin.js';
import { mediaBody, md5Of } from '../helpers/media.js';
import { startDaemon, makeRoot, type DaemonHandle } from '../helpers/daemon.js';
import { pgServer } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { parseReport } from '../../src/daemon/inbox/report.js';

const pg = await pgServer(t);

interface BatchRow {
  id: string;
  node_id: string;
  state: string;
  lines: unknown[];
  source_path: string;
}

/** A folder removed when the test ends. */
function tempRoot(t: Test): string {
  const dir = makeRoot();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An origin with three URLs `/{p}0..2.png`, the last held until released. */
async function threeUrls(t: Test, p: string): Promise<{ origin: Origin; bodies: Buffer[]; held: { release: () => void } }> {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = [0, 1, 2].map((i) => mediaBody(`${p}${i}`, 5000));
  origin.route(`/${p}0.png`, { body: bodies[0] });
  origin.route(`/${p}1.png`, { body: bodies[1] });
  const held = heldRoute(origin, `/${p}2.png`, bodies[2]);
  t.teardown(() => held.release());
  return { origin, bodies, held };
}

function dbName(url: string): string {
  return /\/([^/?]+)\?/.exec(url)![1];
}

/** Every batch-*.json under these folders (the embedded store's files; none may exist in cluster mode). */
function batchFiles(...dirs: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (/^batch-.*\.json$/.test(e.name)) out.push(path.join(d, e.name));
    }
  };
  for (const d of dirs) walk(d);
  return out;
}

const reportsWritten = (...ds: DaemonHandle[]): number => ds.reduce((n, d) => n + (d.stderr().match(/inbox report written/g)?.length ?? 0), 0);

t.test('a file is recorded in the database before it moves; its report written when its jobs end; the row deleted then', async (t) => {
  const { origin, bodies, held } = await threeUrls(t, 'r');
  const url = await pg.freshDatabase();
  const db = dbName(url);
  const rows = (): Promise<BatchRow[]> => pg.sql<BatchRow>('SELECT id, node_id, state, lines, source_path FROM mediacache.batches', [], db);
  const shared = tempRoot(t);
  const cacheDir = path.join(shared, 'content');
  const a = await startDaemon(t, { cacheDir, args: ['--database', url] });
  const nodeId = (await a.rpc('status', {})).cluster!.nodeId;
  const inbox = a.inboxes[0];
  const file = path.join(inbox, 'rec.urls');
  const moved = path.join(inbox, 'processed', 'rec.urls');

  // Database away: the batch cannot be recorded, so the file must not move.
  await pg.stop();
  fs.writeFileSync(file, ['/r0.png', '/r1.png', 'not a url', '/r2.png'].map((p) => (p.startsWith('/') ? origin.url(p) : p)).join('\n') + '\n');
  await waitFor(() => /inbox file not taken; will retry/.test(a.stderr()), { timeoutMs: 30_000, what: 'an intake attempt failing on the database' });
  t.ok(fs.existsSync(file), 'the file stays in the inbox while its batch cannot be recorded');
  t.notOk(fs.existsSync(moved));
  await pg.start();

  await waitFor(() => fs.existsSync(moved), { timeoutMs: 60_000, what: 'the file moved once the database is back' });
  // Read as soon as the file is seen in processed/: the row was committed, with every line, before the rename.
  const [row] = await rows();
  t.match(row, { node_id: nodeId, source_path: file }, 'the batch row, owned by the daemon that took the file');
  t.ok(row.state === 'enqueued' || row.state === 'moved', `recorded (${row.state})`);
  t.equal(row.lines.length, 4, 'every line recorded');
  await waitFor(async () => (await rows())[0]?.state === 'moved', { timeoutMs: 10_000, what: 'the row marked moved' });
  t.equal((await rows()).length, 1);
  t.same(batchFiles(shared, a.root), [], 'no batch file in the state dir');
  t.notOk(fs.existsSync(moved + '.report.tsv'), 'no report while a job runs');

  held.release();
  await waitFor(() => fs.existsSync(moved + '.report.tsv'), { timeoutMs: 60_000, what: 'the report' });
  const report = parseReport(fs.readFileSync(moved + '.report.tsv', 'utf8'));
  t.same(
    report.map((r) => [r.line, r.outcome, r.result]),
    [
      [1, 'done', md5Of(bodies[0])],
      [2, 'done', md5Of(bodies[1])],
      [3, 'invalid', 'E_INVALID_URL'],
      [4, 'done', md5Of(bodies[2])],
    ],
  );
  await waitFor(async () => (await rows()).length === 0, { timeoutMs: 10_000, what: 'the row deleted after the report' });
  await waitFor(() => reportsWritten(a) >= 1, { timeoutMs: 10_000, what: 'the report log line' });
  t.equal(reportsWritten(a), 1);
});

t.test('kill -9 after the move, before the jobs end; restarted, the daemon still writes the report, complete, once', async (t) => {
  const { origin, bodies, held } = await threeUrls(t, 'k');
  const url = await pg.freshDatabase();
  const db = dbName(url);
  const shared = tempRoot(t);
  const cacheDir = path.join(shared, 'content');
  const root = tempRoot(t);
  const first = await startDaemon(t, { root, cacheDir, args: ['--database', url] });
  const nodeId = (await first.rpc('status', {})).cluster!.nodeId;
  const inbox = first.inboxes[0];
  const moved = path.join(inbox, 'processed', 'k.urls');
  fs.writeFileSync(path.join(inbox, 'k.urls'), ['/k0.png', '/k1.png', '/k2.png'].map((p) => origin.url(p)).join('\n') + '\n');
  await waitFor(() => fs.existsSync(moved), { timeoutMs: 30_000, what: 'the file moved' });
  await waitFor(async () => (await first.rpc('status', {})).cluster!.queue.done === 2, { timeoutMs: 30_000, what: 'the two free jobs done' });
  t.equal(origin.hits('/k2.png'), 1, 'the held job is running');
  t.same(batchFiles(shared, root), [], 'no batch file in the state dir');
  first.kill('SIGKILL');
  await first.exited;
  t.notOk(fs.existsSync(moved + '.report.tsv'), 'no report before the kill');
  t.same(
    (await pg.sql<BatchRow>('SELECT node_id, state FROM mediacache.batches', [], db)).map((r) => [r.node_id, r.state]),
    [[nodeId, 'moved']],
    'the batch survives the kill in the database',
  );

  const second = await startDaemon(t, { root, cacheDir, args: ['--database', url] });
  t.equal((await second.rpc('status', {})).cluster!.nodeId, nodeId, 'the restarted daemon is the same node');
  // The job it was running is queued again as it rejoins (no wait for the 30 s lease).
  t.match(second.stderr(), /jobs this daemon was running when it stopped are queued again.*"jobs":1/);
  held.release();
  await waitFor(() => fs.existsSync(moved + '.report.tsv'), { timeoutMs: 90_000, what: 'the report after the restart' });
  const report = parseReport(fs.readFileSync(moved + '.report.tsv', 'utf8'));
  t.same(
    report.map((r) => [r.line, r.outcome, r.result]),
    bodies.map((b, i) => [i + 1, 'done', md5Of(b)]),
    'complete: every line done with its md5, including the jobs ended before the restart',
  );
  t.same(fs.readdirSync(path.join(inbox, 'processed')).sort(), ['k.urls', 'k.urls.report.tsv']);
  await waitFor(async () => (await pg.sql('SELECT 1 FROM mediacache.batches', [], db)).length === 0, { timeoutMs: 10_000, what: 'the row deleted' });
  // The file can be seen before its log line comes through the pipe; the row goes after both.
  await waitFor(() => reportsWritten(first, second) >= 1, { timeoutMs: 10_000, what: 'the report log line' });
  t.equal(reportsWritten(first, second), 1, 'written once');
  t.same(batchFiles(shared, root), [], 'and still no batch file');
});

t.test('two daemons watching one inbox folder: each file taken once, one row and one report each, every URL done once', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const FILES = 4;
  const PER = 3;
  const bodies = new Map<string, Buffer>();
  for (let f = 0; f < FILES; f++) for (let i = 0; i < PER; i++) bodies.set(`/s${f}-${i}.png`, mediaBody(`shared${f}-${i}`, 4000));
  const heldPath = '/s0-0.png';
  for (const [p, body] of bodies) if (p !== heldPath) origin.route(p, { body });
  const held = heldRoute(origin, heldPath, bodies.get(heldPath)!);
  t.teardown(() => held.release());
  const url = await pg.freshDatabase();
  const db = dbName(url);
  const shared = tempRoot(t);
  const cacheDir = path.join(shared, 'content');
  const inbox = path.join(shared, 'inbox');
  fs.mkdirSync(inbox);
  const a = await startDaemon(t, { cacheDir, inboxes: [inbox], args: ['--database', url] });
  const b = await startDaemon(t, { cacheDir, inboxes: [inbox], args: ['--database', url] });
  const ids = [(await a.rpc('status', {})).cluster!.nodeId, (await b.rpc('status', {})).cluster!.nodeId];
  for (let f = 0; f < FILES; f++) {
    const lines = Array.from({ length: PER }, (_, i) => origin.url(`/s${f}-${i}.png`));
    fs.writeFileSync(path.join(inbox, `s${f}.urls`), lines.join('\n') + '\n');
  }
  const processed = path.join(inbox, 'processed');
  const names = Array.from({ length: FILES }, (_, f) => `s${f}.urls`);
  await waitFor(() => names.every((n) => fs.existsSync(path.join(processed, n))), { timeoutMs: 60_000, what: 'every file moved' });
  const rows = await pg.sql<BatchRow>('SELECT id, node_id, state FROM mediacache.batches', [], db);
  t.ok(rows.length >= 1 && rows.length <= FILES, `at most one row per file (${rows.length} rows; batches whose jobs all ended are reported and gone)`);
  t.ok(rows.every((r) => ids.includes(r.node_id)), 'each owned by one of the daemons');
  t.ok(fs.existsSync(path.join(processed, 's0.urls')) && !fs.existsSync(path.join(processed, 's0.urls.report.tsv')), 'the batch with the held job waits');

  held.release();
  await waitFor(() => names.every((n) => fs.existsSync(path.join(processed, n + '.report.tsv'))), { timeoutMs: 60_000, what: 'every report' });
  await waitFor(async () => (await pg.sql('SELECT 1 FROM mediacache.batches', [], db)).length === 0, { timeoutMs: 10_000, what: 'every row deleted' });
  t.same(fs.readdirSync(processed).sort(), names.flatMap((n) => [n, n + '.report.tsv']).sort(), 'one moved file and one report per file, nothing else');
  await waitFor(() => reportsWritten(a, b) >= FILES, { timeoutMs: 10_000, what: 'the report log lines' });
  t.equal(reportsWritten(a, b), FILES, 'each report written once');
  const leftAlone = [a, b].reduce((n, d) => n + (d.stderr().match(/taken by another daemon/g)?.length ?? 0), 0);
  t.comment(`files one daemon found claimed by the other and left alone: ${leftAlone}`);
  for (let f = 0; f < FILES; f++) {
    const report = parseReport(fs.readFileSync(path.join(processed, `s${f}.urls.report.tsv`), 'utf8'));
    t.same(
      report.map((r) => [r.outcome, r.result]),
      Array.from({ length: PER }, (_, i) => ['done', md5Of(bodies.get(`/s${f}-${i}.png`)!)]),
      `s${f}.urls reported complete`,
    );
  }
  for (const p of bodies.keys()) t.equal(origin.hits(p), 1, `${p} fetched once`);
  const jobs = await pg.sql<{ url: string; n: number }>("SELECT url, count(*)::int AS n FROM mediacache.jobs GROUP BY url", [], db);
  t.equal(jobs.length, bodies.size, 'a job for every URL');
  t.ok(jobs.every((j) => j.n === 1), 'and only one');
  t.same((await a.rpc('status', {})).cluster!.queue, { queued: 0, running: 0, done: bodies.size, failed: 0 }, 'every URL done once');
  t.ok((await b.rpc('status', {})).cluster, 'both daemons still answer');
  t.equal(a.exitStatus(), undefined);
  t.equal(b.exitStatus(), undefined);
  t.same(batchFiles(shared, a.root, b.root), [], 'no batch file in either state dir');
});
