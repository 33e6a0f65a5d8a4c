/**
 * The inbox against hostile or unlucky input, in process: a watcher that
 * misses events, symlinks, FIFOs, a swapped processed/ folder, files over the
 * caps, and a job-store write that fails while a file is being taken.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import type { Logger } from '../../../src/core/util/logger.js';
import { JobStore } from '../../../src/daemon/jobs/job-store.js';
import { Scheduler } from '../../../src/daemon/jobs/scheduler.js';
import { Inbox as RealInbox, type InboxOptions } from '../../../src/daemon/inbox/inbox.js';
import { openInboxFile, RefusedFile } from '../../../src/daemon/inbox/inbox-file.js';
import { parseReport } from '../../../src/daemon/inbox/report.js';
import { fixture, heldRoute, startOrigin } from '../../helpers/origin.js';
import { waitFor } from '../../helpers/wait.js';

type Tt = Parameters<Parameters<typeof t.test>[0]>[0];
const PNG = fixture('sample.png');
const png = (n: number): Buffer => Buffer.concat([PNG, Buffer.from(`hostile-${n}`)]);

interface Logged {
  level: string;
  msg: string;
  meta?: unknown;
}
function memLogger(): Logger & { lines: Logged[]; text(): string } {
  const lines: Logged[] = [];
  const add = (level: string) => (msg: string, meta?: unknown) => void lines.push({ level, msg, meta });
  return { lines, error: add('error'), warn: add('warn'), info: add('info'), debug: add('debug'), text: () => JSON.stringify(lines) } as Logger & { lines: Logged[]; text(): string };
}

function tempRoot(t: Tt): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-inboxh-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  return root;
}

async function boot(t: Tt, root: string, o: Partial<InboxOptions> & { InboxClass?: typeof RealInbox } = {}) {
  const inbox = path.join(root, 'inbox');
  const log = memLogger();
  const cache = await MediaCache.open({ cacheDir: path.join(root, 'cache'), retries: 0, concurrency: 8 });
  const store = await JobStore.open(path.join(root, 'cache', 'index', 'jobs'), { flushDelayMs: 20 });
  const sched = new Scheduler({ cache, store, concurrency: 4, logger: log });
  const Cls = o.InboxClass ?? RealInbox;
  const box = new Cls({ dirs: [inbox], scheduler: sched, store, logger: log, stabilityMs: 100, retryMs: 100, ...o });
  sched.start();
  await box.start();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await box.close();
    await sched.drain(0);
    await store.close();
    await cache.close();
  };
  t.teardown(stop);
  return { inbox, processed: path.join(inbox, 'processed'), log, cache, store, sched, box, stop };
}

const reportOf = (dir: string, name: string) => parseReport(fs.readFileSync(path.join(dir, 'processed', `${name}.report.tsv`), 'utf8'));

t.test('a file the watcher never reports is still taken (the periodic rescan)', async (t) => {
  // The fault: a watcher that misses every event (chokidar can drop one when
  // a folder re-read outlasts its 1 s throttle on a busy machine).
  const deaf = () => {
    const w = new EventEmitter() as EventEmitter & { close(): Promise<void> };
    w.close = async () => undefined;
    setImmediate(() => w.emit('ready'));
    return w;
  };
  const { Inbox } = await t.mockImport<typeof import('../../../src/daemon/inbox/inbox.js')>('../../../src/daemon/inbox/inbox.js', { chokidar: { watch: deaf } });
  const root = tempRoot(t);
  const d = await boot(t, root, { InboxClass: Inbox, rescanMs: 200 });
  fs.writeFileSync(path.join(d.inbox, 'late.urls'), 'not a url\n');
  await waitFor(() => fs.existsSync(path.join(d.processed, 'late.urls.report.tsv')), { timeoutMs: 10_000, what: 'report of a file no event announced' });
  t.same(reportOf(d.inbox, 'late.urls'), [{ line: 1, url: 'not a url', outcome: 'invalid', result: 'E_INVALID_URL' }]);
});

t.test('a symlink is refused without being read; nothing of its target reaches report, batch state or log', async (t) => {
  const root = tempRoot(t);
  const secret = path.join(root, 'secret.txt');
  fs.writeFileSync(secret, 'root:SECRET-HASH-1234:19000:0:99999:7:::\nhttp://secret.example/only-in-the-target.png\n', { mode: 0o600 });
  const d = await boot(t, root);
  fs.symlinkSync(secret, path.join(d.inbox, 'x.urls'));
  await waitFor(() => fs.existsSync(path.join(d.processed, 'x.urls.report.tsv')), { timeoutMs: 10_000, what: 'refusal report' });
  const rows = reportOf(d.inbox, 'x.urls');
  t.equal(rows.length, 1);
  t.match(rows[0], { line: 0, outcome: 'refused', result: 'E_BAD_REQUEST' });
  t.match(rows[0].url, /symbolic link/);
  t.ok(fs.lstatSync(path.join(d.processed, 'x.urls')).isSymbolicLink(), 'the link itself was moved, not its target');
  t.ok(fs.existsSync(secret), 'target untouched');
  const everything = [fs.readFileSync(path.join(d.processed, 'x.urls.report.tsv'), 'utf8'), d.log.text(), ...fs.readdirSync(d.store.dir).map((n) => fs.readFileSync(path.join(d.store.dir, n), 'utf8'))].join('\n');
  t.notMatch(everything, /SECRET-HASH|only-in-the-target/, 'no byte of the target anywhere');
  t.equal(d.store.size, 0, 'no job');
});

t.test('an invalid line is echoed as a short escaped prefix, never whole', async (t) => {
  const root = tempRoot(t);
  const d = await boot(t, root);
  const long = `PASSWORD=hunter2\x1b[31m\u202e${'A'.repeat(500)}TAILMARK`;
  fs.writeFileSync(path.join(d.inbox, 'bad.urls'), `${long}\n`);
  await waitFor(() => fs.existsSync(path.join(d.processed, 'bad.urls.report.tsv')), { timeoutMs: 10_000, what: 'report' });
  const [row] = reportOf(d.inbox, 'bad.urls');
  t.equal(row.outcome, 'invalid');
  t.ok(row.url.startsWith('PASSWORD=hunter2\\x1b[31m\\u202e'), `control characters escaped: ${row.url.slice(0, 40)}`);
  t.ok(row.url.endsWith('…'), 'cut, with an ellipsis');
  t.ok(row.url.length <= 110, `short (${row.url.length} chars)`);
  t.notMatch(fs.readFileSync(path.join(d.processed, 'bad.urls.report.tsv'), 'utf8'), /TAILMARK|\x1b/);
});

t.test('processed/ swapped for a symlink: nothing is written through it; the file waits until it is fixed', async (t) => {
  const root = tempRoot(t);
  const d = await boot(t, root);
  const elsewhere = path.join(root, 'elsewhere');
  fs.mkdirSync(elsewhere);
  fs.rmSync(d.processed, { recursive: true });
  fs.symlinkSync(elsewhere, d.processed);
  fs.writeFileSync(path.join(d.inbox, 'w.urls'), 'nope\n');
  await waitFor(() => d.log.lines.some((l) => l.msg.startsWith('inbox file not taken') && /not a directory/.test(JSON.stringify(l.meta))), { timeoutMs: 10_000, what: 'refusal logged' });
  t.same(fs.readdirSync(elsewhere), [], 'nothing written through the link');
  t.ok(fs.existsSync(path.join(d.inbox, 'w.urls')), 'the file stays in the inbox');
  // A real processed/ owned by someone else's rules (group-writable) is refused the same way.
  fs.unlinkSync(d.processed);
  fs.mkdirSync(d.processed);
  fs.chmodSync(d.processed, 0o777);
  await waitFor(() => d.log.lines.some((l) => /writable by group or others/.test(JSON.stringify(l.meta))), { timeoutMs: 10_000, what: 'mode refusal logged' });
  t.ok(fs.existsSync(path.join(d.inbox, 'w.urls')), 'still waiting');
  fs.chmodSync(d.processed, 0o750);
  await waitFor(() => fs.existsSync(path.join(d.processed, 'w.urls.report.tsv')), { timeoutMs: 20_000, what: 'taken once processed/ is sound' });
  t.same(fs.readdirSync(elsewhere), []);
});

t.test('a FIFO (or one swapped in before the open) is refused at once and intake goes on', async (t) => {
  const root = tempRoot(t);
  const fifo = path.join(root, 'direct.fifo');
  execFileSync('mkfifo', [fifo]);
  // The opened descriptor is checked, without blocking: no writer ever comes.
  const t0 = Date.now();
  await t.rejects(openInboxFile(fifo), RefusedFile);
  t.ok(Date.now() - t0 < 2000, 'open did not wait for a writer');
  const d = await boot(t, root);
  execFileSync('mkfifo', [path.join(d.inbox, 'pipe.urls')]);
  await waitFor(() => fs.existsSync(path.join(d.processed, 'pipe.urls.report.tsv')), { timeoutMs: 10_000, what: 'FIFO refused' });
  t.match(reportOf(d.inbox, 'pipe.urls')[0], { outcome: 'refused', url: /FIFO/ });
  fs.writeFileSync(path.join(d.inbox, 'after.urls'), 'nope\n');
  await waitFor(() => fs.existsSync(path.join(d.processed, 'after.urls.report.tsv')), { timeoutMs: 10_000, what: 'the next file taken' });
  await d.stop(); // and close does not hang
});

t.test('files over the line or byte cap are refused whole, with a report saying so', async (t) => {
  const root = tempRoot(t);
  const d = await boot(t, root, { maxLines: 100, maxBytes: 10_000 });
  // 101 URL lines (comments and blanks do not count), under the byte cap.
  const many = ['# header', '', ...Array.from({ length: 101 }, (_, i) => `http://127.0.0.1:9/m${i}`)].join('\n');
  fs.writeFileSync(path.join(d.inbox, 'many.urls'), many);
  const exact = Array.from({ length: 100 }, (_, i) => `bad line ${i}`).join('\n');
  fs.writeFileSync(path.join(d.inbox, 'exact.urls'), exact);
  fs.writeFileSync(path.join(d.inbox, 'big.urls'), `# ${'x'.repeat(10_001)}\n`);
  for (const n of ['many', 'exact', 'big']) await waitFor(() => fs.existsSync(path.join(d.processed, `${n}.urls.report.tsv`)), { timeoutMs: 10_000, what: `${n} report` });
  t.match(reportOf(d.inbox, 'many.urls'), [{ line: 0, outcome: 'refused', result: 'E_TOO_LARGE', url: /more than 100 URL lines/ }]);
  t.match(reportOf(d.inbox, 'big.urls'), [{ line: 0, outcome: 'refused', result: 'E_TOO_LARGE', url: /10004 bytes; the limit is 10000/ }]);
  t.equal(reportOf(d.inbox, 'exact.urls').length, 100, 'exactly at the cap is taken');
  t.equal(d.store.size, 0, 'no job from a refused file');
});

t.test('a job-store write failing during intake: every retry reuses the jobs it made (no duplicates)', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const N = 30;
  for (let i = 0; i < N; i++) origin.route(`/d${i}.png`, { body: png(i) });
  const root = tempRoot(t);
  const d = await boot(t, root, { chunkSize: 10 });
  // The fault: the disk under the job store is full (every flush fails) until we say so.
  let full = true;
  let failures = 0;
  const flush = d.store.flush.bind(d.store);
  d.store.flush = () => {
    if (!full) return flush();
    failures++;
    return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
  };
  const lines = Array.from({ length: N }, (_, i) => origin.url(`/d${i}.png`));
  lines.push(origin.url('/d0.png')); // a duplicate line shares the first line's job
  fs.writeFileSync(path.join(d.inbox, 'full.urls'), lines.join('\n'));
  // Several failed attempts, while the jobs already made run and end.
  await waitFor(() => failures >= 5 && d.sched.counts().done >= 10, { timeoutMs: 20_000, what: 'retries under a full disk' });
  t.ok(fs.existsSync(path.join(d.inbox, 'full.urls')), 'not taken while the store cannot write');
  full = false;
  await waitFor(() => fs.existsSync(path.join(d.processed, 'full.urls.report.tsv')), { timeoutMs: 20_000, what: 'report once the disk has room' });
  const rows = reportOf(d.inbox, 'full.urls');
  t.equal(rows.length, N + 1);
  t.ok(rows.every((r) => r.outcome === 'done'), 'every line done');
  t.equal(d.store.size, N, `one job per distinct URL (${d.store.size})`);
  for (let i = 0; i < N; i++) t.equal(origin.hits(`/d${i}.png`), 1, `d${i} fetched once`);
});

t.test('report 0640 and batch file 0600 whatever the umask', async (t) => {
  const old = process.umask(0);
  t.teardown(() => void process.umask(old));
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const { release } = heldRoute(origin, '/held.png', png(99));
  const root = tempRoot(t);
  const d = await boot(t, root);
  t.equal(fs.statSync(d.processed).mode & 0o7777, 0o750, 'processed/ 0750');
  fs.writeFileSync(path.join(d.inbox, 'm.urls'), `${origin.url('/held.png')}\n`);
  await waitFor(() => fs.existsSync(path.join(d.processed, 'm.urls')), { timeoutMs: 10_000, what: 'moved' });
  const batchFiles = fs.readdirSync(d.store.dir).filter((n) => n.startsWith('batch-'));
  t.equal(batchFiles.length, 1);
  t.equal(fs.statSync(path.join(d.store.dir, batchFiles[0])).mode & 0o777, 0o600, 'batch file 0600');
  release();
  await waitFor(() => fs.existsSync(path.join(d.processed, 'm.urls.report.tsv')), { timeoutMs: 10_000, what: 'report' });
  t.equal(fs.statSync(path.join(d.processed, 'm.urls.report.tsv')).mode & 0o777, 0o640, 'report 0640');
});
