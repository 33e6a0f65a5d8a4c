/**
 * End to end: a real daemon with --webhook, --on-done and --on-failed, URLs
 * from a loopback origin, a loopback receiver. Normal case: every event
 * (job.done, job.failed, upstream.changed, sweep.done) arrives once, signed,
 * and the exec hooks see the record / error.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';
import { duplicates, startReceiver } from '../daemon/hooks/receiver.js';
import { pendingInOutbox, recordingHook } from './hooks-helpers.js';

const SECRET = 'e2e-secret-' + crypto.randomBytes(8).toString('hex');
const md5 = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');

t.test('every event reaches the receiver once, signed; exec hooks get record and error', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const rx = await startReceiver(SECRET);
  t.teardown(() => rx.close());
  const png = fixture('sample.png');
  const jpg = fixture('sample.jpg');
  const gif = fixture('sample.gif');
  const changedBefore = Buffer.concat([png, Buffer.from('version-1')]);
  origin.route('/a.png', { body: png, headers: { 'content-type': 'image/png' } });
  origin.route('/b.jpg', { body: jpg, headers: { 'content-type': 'image/jpeg' } });
  origin.route('/c.gif', { body: gif, headers: { 'content-type': 'image/gif' } });
  origin.route('/chg.png', { body: changedBefore, headers: { 'content-type': 'image/png' } });
  // /missing.png: the origin's 404.

  const work = fs.mkdtempSync('/tmp/mc-hk-');
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const secretFile = path.join(work, 'secret');
  fs.writeFileSync(secretFile, SECRET + '\n', { mode: 0o600 });
  const hook = recordingHook(work);
  const d = await startDaemon(t, {
    args: ['--webhook', rx.url, '--webhook-secret-file', secretFile, '--on-done', JSON.stringify(hook.argv), '--on-failed', JSON.stringify(hook.argv), '--hook-timeout', '20s'],
  });
  t.notMatch(d.stderr(), SECRET, 'the secret is never logged');

  const urls = ['/a.png', '/b.jpg', '/c.gif', '/chg.png', '/missing.png'].map((p) => origin.url(p));
  const added = await d.rpc('add', { urls, wait: true });
  t.same(added.items.map((i) => i.state), ['done', 'done', 'done', 'done', 'failed']);

  // The cached copy of /chg.png goes missing and the origin now serves other bytes:
  // the sweep's repair notices the change.
  const chg = added.items[3].record!;
  fs.rmSync(chg.localPath);
  origin.route('/chg.png', { body: Buffer.concat([png, Buffer.from('version-2')]), headers: { 'content-type': 'image/png' } });
  const sweep = await d.rpc('sweep', { wait: true });
  t.same(sweep.report!.changedUpstream, [{ md5: chg.md5, url: origin.url('/chg.png') }]);

  const has = (type: string, pred: (x: (typeof rx.delivered)[number]) => boolean = () => true): boolean => rx.delivered.some((x) => x.event === type && pred(x));
  await waitFor(
    () =>
      rx.delivered.filter((x) => x.event === 'job.done').length === 4 &&
      has('job.failed') &&
      has('upstream.changed') &&
      has('sweep.done', (x) => (x.json.data.report as { id: string }).id === sweep.id),
    { what: 'all events at the receiver', timeoutMs: 30_000 },
  );
  await waitFor(() => pendingInOutbox(d.cacheDir).length === 0, { what: 'outbox drained' });

  t.ok(rx.seen.every((x) => x.verified), 'every request carries a valid signature');
  const done = rx.delivered.filter((x) => x.event === 'job.done');
  t.same(done.map((x) => (x.json.data.record as { md5: string }).md5).sort(), [md5(png), md5(jpg), md5(gif), md5(changedBefore)].sort(), 'job.done carries the records');
  const failed = rx.delivered.find((x) => x.event === 'job.failed')!;
  t.match(failed.json.data, { url: origin.url('/missing.png'), code: 'E_HTTP', status: 404 });
  const up = rx.delivered.find((x) => x.event === 'upstream.changed')!;
  t.match(up.json.data, { url: origin.url('/chg.png'), oldMd5: chg.md5, detectedBy: 'sweep' });

  // Exec hooks: one run per job end, with the event on stdin and the fields in the environment.
  await waitFor(() => fs.readdirSync(hook.outDir).length === 5, { what: 'five exec hook runs', timeoutMs: 30_000 });
  const runs = fs.readdirSync(hook.outDir).map((f) => JSON.parse(fs.readFileSync(path.join(hook.outDir, f), 'utf8')) as { stdin: { id: string; type: string }; env: Record<string, string> });
  const a = runs.find((r) => r.env.MEDIACACHE_URL === origin.url('/a.png'))!;
  t.match(a.env, { MEDIACACHE_EVENT: 'job.done', MEDIACACHE_MD5: md5(png), MEDIACACHE_SIZE: String(png.length), MEDIACACHE_TYPE: 'image', MEDIACACHE_PATH: added.items[0].record!.localPath });
  t.ok(fs.existsSync(a.env.MEDIACACHE_PATH), 'the path names the stored file');
  const f = runs.find((r) => r.env.MEDIACACHE_EVENT === 'job.failed')!;
  t.match(f.env, { MEDIACACHE_ERROR_CODE: 'E_HTTP', MEDIACACHE_HTTP_STATUS: '404', MEDIACACHE_URL: origin.url('/missing.png') });
  t.same(
    runs.map((r) => r.stdin.id).sort(),
    rx.delivered.filter((x) => x.event.startsWith('job.')).map((x) => x.id).sort(),
    'the exec hooks and the webhook see the same events (same ids)',
  );
  t.equal(runs.find((r) => r.stdin.id === failed.id) && JSON.stringify(runs.find((r) => r.stdin.id === failed.id)!.stdin), failed.body, 'stdin is byte-for-byte the webhook body');

  const exit = await d.stop();
  t.equal(exit.code, 0);
  t.same(duplicates(rx.delivered), [], 'no event delivered twice');
  t.same(duplicates(rx.seen), [], 'nor even sent twice');
  t.same(pendingInOutbox(d.cacheDir), [], 'nothing left in the outbox');
});
