/**
 * Job control through the real mcctl against the real daemon: `cancel URL`,
 * `retry --failed`, `prune`, and `jobs` showing what happened.
 */
import t from 'tap';
import type http from 'node:http';
import { fixture, startOrigin } from '../helpers/origin.js';
import { startDaemon } from '../helpers/daemon.js';
import { waitFor } from '../helpers/wait.js';
import { mcctl } from './mcctl-helpers.js';
import type { JobInfo } from '../../src/core/protocol/rpc.js';

t.test('mcctl cancel, retry --failed and prune end to end', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const held: http.ServerResponse[] = [];
  let healthy = false;
  // Hangs until the test lets it answer: a running job to cancel, then a good download on retry.
  origin.route('/slow.png', (_req, res) => {
    if (healthy) {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(fixture('sample.png'));
    } else held.push(res);
  });
  t.teardown(() => held.forEach((r) => r.destroy()));
  const d = await startDaemon(t, { args: ['--retries', '0'] });
  const url = origin.url('/slow.png');

  const add = await mcctl(d, ['add', url]);
  t.equal(add.code, 0, add.stderr);
  await waitFor(async () => (await d.rpc('jobs', { state: 'running' })).jobs.some((j: JobInfo) => j.url === url), { timeoutMs: 30_000, what: 'the job to run' });

  const cancel = await mcctl(d, ['cancel', url]);
  t.equal(cancel.code, 0, cancel.stderr);
  t.match(cancel.stdout, /^cancelled\s+j\d+\s+/m);
  const failed = await waitFor(async () => (await d.rpc('jobs', { state: 'failed' })).jobs.find((j: JobInfo) => j.url === url), { timeoutMs: 30_000, what: 'the cancelled job to end' });
  t.equal(failed.error?.code, 'E_ABORTED', 'a cancelled job ends as failed with E_ABORTED');
  const again = await mcctl(d, ['cancel', failed.id]);
  t.equal(again.code, 2, 'an ended job: nothing cancelled, exit 2');

  healthy = true;
  const retry = await mcctl(d, ['retry', '--failed', '--json']);
  t.equal(retry.code, 0, retry.stderr);
  t.same((JSON.parse(retry.stdout) as { jobs: JobInfo[] }).jobs.map((j) => j.id), [failed.id], 'the failed job queued again, same id');
  await waitFor(async () => (await d.rpc('jobs', { state: 'done' })).jobs.some((j: JobInfo) => j.id === failed.id), { timeoutMs: 30_000, what: 'the retried job to finish' });

  const jobs = await mcctl(d, ['jobs', '--json']);
  t.equal((JSON.parse(jobs.stdout) as { jobs: JobInfo[] }).jobs.length, 1);
  const prune = await mcctl(d, ['prune', '--keep', '0']);
  t.equal(prune.code, 0, prune.stderr);
  t.match(prune.stdout, /forgot 1 ended job, 0 remembered/);
  t.same((await d.rpc('jobs', {})).jobs, [], 'nothing left in jobs');
  const find = await mcctl(d, ['find', url, '--json']);
  t.equal(find.code, 0, 'the cached file stays');
});
