import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { silentLogger, type Logger } from '../../../src/core/util/logger.js';

const log: Logger = process.env.DEBUG_INBOX ? { error: (m, x) => console.error('E', m, x), warn: (m, x) => console.error('W', m, x), info: (m, x) => console.error('I', m, x), debug: () => undefined } : silentLogger;
import { JobStore, type BatchRecord } from '../../../src/daemon/jobs/job-store.js';
import { Scheduler } from '../../../src/daemon/jobs/scheduler.js';
import { Inbox } from '../../../src/daemon/inbox/inbox.js';
import { batchIdOf } from '../../../src/daemon/inbox/inbox-file.js';
import { parseReport } from '../../../src/daemon/inbox/report.js';
import { fixture, heldRoute, startOrigin } from '../../helpers/origin.js';
import { waitFor } from '../../helpers/wait.js';

const PNG = fixture('sample.png');
const png = (n: number): Buffer => Buffer.concat([PNG, Buffer.from(`tail-${n}`)]);
type Tt = Parameters<Parameters<typeof t.test>[0]>[0];

interface Daemonish {
  root: string;
  inbox: string;
  cache: MediaCache;
  store: JobStore;
  sched: Scheduler;
  box: Inbox;
  stop(): Promise<void>;
}

/** The daemon's wiring, in process: cache → store → scheduler → inbox. */
async function boot(root: string, o: { stabilityMs?: number; chunkSize?: number; concurrency?: number; startInbox?: boolean } = {}): Promise<Daemonish> {
  const inbox = path.join(root, 'inbox');
  const cache = await MediaCache.open({ cacheDir: path.join(root, 'cache'), retries: 0, concurrency: 8 });
  const store = await JobStore.open(path.join(root, 'cache', 'index', 'jobs'), { flushDelayMs: 20 });
  const sched = new Scheduler({ cache, store, concurrency: o.concurrency ?? 4, logger: log });
  const box = new Inbox({ dirs: [inbox], scheduler: sched, store, logger: log, stabilityMs: o.stabilityMs ?? 1000, chunkSize: o.chunkSize });
  sched.start();
  if (o.startInbox !== false) await box.start();
  let stopped = false;
  return {
    root, inbox, cache, store, sched, box,
    async stop() {
      if (stopped) return;
      stopped = true;
      await box.close();
      await sched.drain(0);
      await store.close();
      await cache.close();
    },
  };
}

/** `fast`: on tmpfs when there is one (fsync there is free; this VM's disk costs ~15 ms per download). */
function tempRoot(t: Tt, fast = false): string {
  const base = fast && fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const root = fs.mkdtempSync(path.join(base, 'mc-inbox-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return root;
}

t.test('a file written in two halves, with every kind of line, is processed and reported', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  for (let i = 0; i < 3; i++) origin.route(`/img${i}.png`, { body: png(i) });
  const root = tempRoot(t);
  const d = await boot(root);
  t.teardown(() => d.stop());
  const lines = [
    '# batch one', // 1
    origin.url('/img0.png'), // 2
    '', // 3
    `  ${origin.url('/img1.png')}  `, // 4
    'not a url', // 5
    'ftp://files.example/x.png', // 6
    origin.url('/img0.png'), // 7 duplicate of line 2
    'file:///etc/passwd', // 8
    origin.url('/missing.png'), // 9 → 404
    origin.url('/img2.png'), // 10
  ];
  const text = '\ufeff' + lines.join('\r\n') + '\r\n';
  const file = path.join(d.inbox, 'batch1.urls');
  const half = Math.floor(text.length / 2);
  const t0 = Date.now();
  fs.writeFileSync(file, text.slice(0, half));
  await new Promise((r) => setTimeout(r, 500)); // the writer's pause is the behaviour under test
  fs.appendFileSync(file, text.slice(half));
  const report = path.join(d.inbox, 'processed', 'batch1.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 20_000, what: 'report' });
  t.ok(Date.now() - t0 >= 1500, 'not read before it was stable');
  t.notOk(fs.existsSync(file), 'moved out of the inbox');
  t.equal(fs.readFileSync(path.join(d.inbox, 'processed', 'batch1.urls'), 'utf8'), text, 'moved intact');
  const rows = parseReport(fs.readFileSync(report, 'utf8'));
  const byUrl = new Map<string, string>();
  for (const p of ['/img0.png', '/img1.png', '/img2.png']) {
    const rec = await d.cache.findByUrl(origin.url(p));
    if (rec) byUrl.set(p, rec.md5);
  }
  const md5 = (p: string) => byUrl.get(p)!;
  t.same(rows, [
    { line: 2, url: origin.url('/img0.png'), outcome: 'done', result: md5('/img0.png') },
    { line: 4, url: origin.url('/img1.png'), outcome: 'done', result: md5('/img1.png') },
    { line: 5, url: 'not a url', outcome: 'invalid', result: 'E_INVALID_URL' },
    { line: 6, url: 'ftp://files.example/x.png', outcome: 'invalid', result: 'E_UNSUPPORTED_SCHEME' },
    { line: 7, url: origin.url('/img0.png'), outcome: 'done', result: md5('/img0.png') },
    { line: 8, url: 'file:///etc/passwd', outcome: 'invalid', result: 'E_UNSUPPORTED_SCHEME' },
    { line: 9, url: origin.url('/missing.png'), outcome: 'failed', result: 'E_HTTP', status: 404 },
    { line: 10, url: origin.url('/img2.png'), outcome: 'done', result: md5('/img2.png') },
  ]);
  t.equal(origin.hits('/img0.png'), 1, 'duplicate line enqueued once');
  // The report is written first, then the batch is forgotten (so a crash in between re-reports, never loses it).
  await waitFor(() => d.store.batches().length === 0, { timeoutMs: 5_000, what: 'batch forgotten once reported' });
  t.equal(d.store.batches().length, 0, 'batch forgotten once reported');
  t.match(d.sched.list({ state: 'done' }).jobs[0].source, /batch1\.urls:\d+$/);
});

t.test('dotfile-then-rename and pre-existing files; ignored names stay put', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  for (let i = 0; i < 2; i++) origin.route(`/r${i}.png`, { body: png(10 + i) });
  const root = tempRoot(t);
  const inbox = path.join(root, 'inbox');
  fs.mkdirSync(inbox, { recursive: true });
  fs.writeFileSync(path.join(inbox, 'early.urls'), origin.url('/r0.png') + '\n');
  for (const n of ['.hidden.urls', 'x.urls.tmp', 'y.part', 'notes.txt']) fs.writeFileSync(path.join(inbox, n), origin.url('/r1.png') + '\n');
  const d = await boot(root, { stabilityMs: 3000 });
  t.teardown(() => d.stop());
  const stage = path.join(inbox, '.drop.urls');
  fs.writeFileSync(stage, origin.url('/r1.png') + '\n');
  // Let the clock tick so the rename's ctime is later than the write's mtime.
  await waitFor(() => Date.now() - fs.statSync(stage).mtimeMs > 20, { what: 'tick' });
  const t0 = Date.now();
  fs.renameSync(stage, path.join(inbox, 'drop.urls'));
  await waitFor(() => fs.existsSync(path.join(inbox, 'processed', 'drop.urls')), { timeoutMs: 10_000, what: 'drop moved' });
  const took = Date.now() - t0;
  t.ok(took < 2500, `rename drop taken without the 3 s stability wait (${took} ms)`);
  await waitFor(() => fs.existsSync(path.join(inbox, 'processed', 'early.urls.report.tsv')), { timeoutMs: 10_000, what: 'early report' });
  await waitFor(() => fs.existsSync(path.join(inbox, 'processed', 'drop.urls.report.tsv')), { timeoutMs: 10_000, what: 'drop report' });
  for (const n of ['.hidden.urls', 'x.urls.tmp', 'y.part', 'notes.txt']) t.ok(fs.existsSync(path.join(inbox, n)), `${n} ignored`);
  t.equal(origin.hits('/r1.png'), 1);
});

t.test('same name again gets a suffixed processed name; a file with no valid URL is still reported', async (t) => {
  const root = tempRoot(t);
  const d = await boot(root, { stabilityMs: 200 });
  t.teardown(() => d.stop());
  for (const round of [1, 2]) {
    fs.writeFileSync(path.join(d.inbox, 'junk.urls'), `# round ${round}\nnope\n`);
    const report = path.join(d.inbox, 'processed', round === 1 ? 'junk.urls.report.tsv' : 'junk.1.urls.report.tsv');
    await waitFor(() => !fs.existsSync(path.join(d.inbox, 'junk.urls')) && fs.existsSync(report), { what: `round ${round} reported` });
  }
  const names = fs.readdirSync(path.join(d.inbox, 'processed')).sort();
  t.same(names, ['junk.1.urls', 'junk.1.urls.report.tsv', 'junk.urls', 'junk.urls.report.tsv']);
  const rows = parseReport(fs.readFileSync(path.join(d.inbox, 'processed', 'junk.1.urls.report.tsv'), 'utf8'));
  t.same(rows, [{ line: 2, url: 'nope', outcome: 'invalid', result: 'E_INVALID_URL' }]);
  t.match(fs.readFileSync(path.join(d.inbox, 'processed', 'junk.1.urls'), 'utf8'), /round 2/);
});

t.test('crash after enqueue, before the move: the restart moves the file without enqueueing again', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/c.png', { body: png(77) });
  const root = tempRoot(t);
  const d = await boot(root, { startInbox: false });
  const file = path.join(d.inbox, 'c.urls');
  fs.mkdirSync(d.inbox, { recursive: true });
  const body = `${origin.url('/c.png')}\nbad line\n`;
  fs.writeFileSync(file, body);
  // What the first run had done before dying: jobs durable, batch recorded, file not moved.
  const [job] = await d.sched.enqueue([{ url: origin.url('/c.png'), source: `${file}:1` }], { priority: 10 });
  const st = fs.statSync(file);
  const ident = { size: st.size, mtimeMs: st.mtimeMs, dev: st.dev, ino: st.ino };
  const batch: BatchRecord = {
    id: batchIdOf(d.inbox, 'c.urls', ident), ident, inbox: d.inbox, sourcePath: file,
    processedPath: path.join(d.inbox, 'processed', 'c.urls'), state: 'enqueued', createdAt: new Date().toISOString(),
    lines: [[1, origin.url('/c.png'), job.id, null], [2, 'bad line', null, 'E_INVALID_URL']],
  };
  await d.store.saveBatch(batch);
  // Its job ran to the end (stopping with no grace could abort it mid-commit: then it runs again after the restart).
  await d.sched.wait([job.id]);
  await d.stop();

  const d2 = await boot(root, { stabilityMs: 200 });
  t.teardown(() => d2.stop());
  const before = d2.store.size;
  await waitFor(() => fs.existsSync(path.join(d2.inbox, 'processed', 'c.urls.report.tsv')), { timeoutMs: 10_000, what: 'report after restart' });
  t.equal(d2.store.size, before, 'no second job');
  t.notOk(fs.existsSync(file));
  const rows = parseReport(fs.readFileSync(path.join(d2.inbox, 'processed', 'c.urls.report.tsv'), 'utf8'));
  t.same(rows.map((r) => [r.line, r.outcome]), [[1, 'done'], [2, 'invalid']]);
  t.equal(rows[0].result, (await d2.cache.findByUrl(origin.url('/c.png')))?.md5);
  t.equal(origin.hits('/c.png'), 1);
});

t.test('a report owed at shutdown is written after restart', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const { release } = heldRoute(origin, '/held.png', png(88));
  const root = tempRoot(t);
  const d = await boot(root, { stabilityMs: 200 });
  fs.writeFileSync(path.join(d.inbox, 'held.urls'), origin.url('/held.png') + '\n');
  await waitFor(() => fs.existsSync(path.join(d.inbox, 'processed', 'held.urls')), { what: 'moved' });
  await waitFor(() => d.sched.active().length === 1, { what: 'running' });
  await d.stop(); // drain(0): the running job goes back to queued
  t.equal(d.store.batches().length, 1, 'batch still owed');
  release();
  const d2 = await boot(root, { stabilityMs: 200 });
  t.teardown(() => d2.stop());
  const report = path.join(d2.inbox, 'processed', 'held.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 10_000, what: 'report' });
  t.equal(parseReport(fs.readFileSync(report, 'utf8'))[0].outcome, 'done');
});

t.test('a 1,500-line file is enqueued in chunks and stays responsive', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const N = 1500;
  const bodies = new Map<string, Buffer>();
  origin.route('/many', (req, res) => {
    const n = Number(new URL(req.url ?? '', 'http://x').searchParams.get('n'));
    const b = bodies.get(String(n)) ?? png(10_000 + n);
    res.writeHead(200, { 'content-length': b.length });
    res.end(b);
  });
  const root = tempRoot(t, true);
  const d = await boot(root, { stabilityMs: 200, chunkSize: 500, concurrency: 8 });
  t.teardown(() => d.stop());
  const text = Array.from({ length: N }, (_, i) => origin.url(`/many?n=${i}`)).join('\n');
  fs.writeFileSync(path.join(d.inbox, 'big.urls'), text);
  let worstLag = 0;
  let last = Date.now();
  const iv = setInterval(() => {
    const now = Date.now();
    worstLag = Math.max(worstLag, now - last - 20);
    last = now;
  }, 20);
  t.teardown(() => clearInterval(iv));
  const report = path.join(d.inbox, 'processed', 'big.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 50_000, what: 'big report' });
  clearInterval(iv);
  const rows = parseReport(fs.readFileSync(report, 'utf8'));
  t.equal(rows.length, N);
  t.ok(rows.every((r) => r.outcome === 'done'));
  t.equal(new Set(rows.map((r) => r.result)).size, N, 'distinct contents');
  t.ok(worstLag < 1000, `event loop lag stays bounded (worst ${worstLag} ms)`);
  t.comment(`1500-line file: worst event-loop lag ${worstLag} ms`);
});
