/**
 * End to end: SIGKILL the daemon while four slow downloads from an inbox file
 * are running. The restart (over the stale socket) re-queues them, they
 * finish, every cached file hashes to its name, nothing is left in .tmp/, and
 * the batch's report appears.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { startDaemon, makeRoot } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { parseReport } from '../../src/daemon/inbox/report.js';
import { TYPE_DIRS } from '../../src/core/types.js';

const PNG = fixture('sample.png');
const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

function cachedFiles(cacheDir: string): string[] {
  const out: string[] = [];
  for (const dir of Object.values(TYPE_DIRS)) {
    const p = path.join(cacheDir, dir);
    if (!fs.existsSync(p)) continue;
    for (const n of fs.readdirSync(p)) out.push(path.join(p, n));
  }
  return out;
}

function tmpEntries(cacheDir: string): string[] {
  const p = path.join(cacheDir, '.tmp');
  return fs.existsSync(p) ? fs.readdirSync(p) : [];
}

t.test('SIGKILL during four slow downloads, then restart', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  // ~600 KiB each at 150 KiB/s: about 4 s per download.
  const bodies = Array.from({ length: 4 }, (_, i) => Buffer.concat([PNG, Buffer.alloc(600 * 1024, i + 1)]));
  bodies.forEach((b, i) => origin.route(`/slow${i}.png`, { body: b, bytesPerSec: 150 * 1024 }));

  const root = makeRoot();
  const d1 = await startDaemon(t, { root });
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const inbox = d1.inboxes[0];
  fs.writeFileSync(path.join(inbox, 'slow.urls'), bodies.map((_, i) => origin.url(`/slow${i}.png`)).join('\n') + '\n');

  await waitFor(
    async () => {
      const st = await d1.rpc('status', {});
      return st.active.length === 4 && st.active.every((a) => a.bytes > 0);
    },
    { timeoutMs: 20_000, what: 'four downloads under way' },
  );
  await waitFor(() => fs.existsSync(path.join(inbox, 'processed', 'slow.urls')), { what: 'file moved to processed/' });
  t.ok(tmpEntries(d1.cacheDir).length > 0, 'partial downloads in .tmp at the time of the kill');
  d1.kill('SIGKILL');
  const exit = await d1.exited;
  t.equal(exit.signal, 'SIGKILL');
  t.ok(fs.existsSync(d1.socket), 'stale socket left behind');

  const d2 = await startDaemon(t, { root });
  const st = await d2.rpc('status', {});
  t.equal(st.queue.queued + st.queue.running, 4, 'the four jobs are back in the queue');

  const report = path.join(inbox, 'processed', 'slow.urls.report.tsv');
  await waitFor(() => fs.existsSync(report), { timeoutMs: 40_000, what: 'report after restart' });
  const rows = parseReport(fs.readFileSync(report, 'utf8'));
  t.same(rows.map((r) => [r.line, r.outcome, r.result]), bodies.map((b, i) => [i + 1, 'done', md5(b)]));

  const files = cachedFiles(d2.cacheDir);
  t.equal(files.length, 4);
  for (const f of files) t.equal(md5(fs.readFileSync(f)), path.basename(f, path.extname(f)), `${path.basename(f)} hashes to its name`);
  // The dead run's partial downloads must not survive the restart: MediaCache.open
  // removes .tmp/ files whose owner pid is gone.
  await waitFor(() => tmpEntries(d2.cacheDir).length === 0, { timeoutMs: 10_000, what: '.tmp/ empty' });
  t.same(tmpEntries(d2.cacheDir), [], '.tmp/ empty after restart');
  const jobs = await d2.rpc('jobs', { state: 'done' });
  t.equal(jobs.total, 4);
  t.ok(jobs.jobs.every((j) => j.attempts >= 1));
  t.equal((await d2.stop()).code, 0, 'clean exit after');
});
