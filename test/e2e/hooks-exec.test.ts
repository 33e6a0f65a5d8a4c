/**
 * End to end: an --on-done hook that hangs is killed at --hook-timeout and
 * does not stall downloads: the other jobs finish while it hangs.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('a hung exec hook is killed at its limit and downloads go on', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const png = fixture('sample.png');
  const n = 6;
  for (let i = 0; i < n; i++) origin.route(`/h${i}.png`, { body: Buffer.concat([png, Buffer.from(`h${i}`)]), headers: { 'content-type': 'image/png' } });

  const work = fs.mkdtempSync('/tmp/mc-hx-');
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const pids = path.join(work, 'pids');
  fs.mkdirSync(pids);
  const script = path.join(work, 'hang.mjs');
  // Records its pid and start time, then never ends.
  fs.writeFileSync(script, `import fs from 'node:fs'; fs.writeFileSync(process.argv[2] + '/' + process.pid, String(Date.now())); setInterval(() => {}, 1000);`);
  const timeoutMs = 8000;
  const d = await startDaemon(t, { args: ['--on-done', JSON.stringify([process.execPath, script, pids]), '--hook-timeout', String(timeoutMs), '--hook-concurrency', '1', '--concurrency', '2'] });

  // The first job ends and its hook starts hanging (spawned before the reply, so after t0).
  const t0 = Date.now();
  const first = await d.rpc('add', { urls: [origin.url('/h0.png')], wait: true });
  t.equal(first.items[0].state, 'done');
  const firstPid = Number(await waitFor(() => fs.readdirSync(pids)[0], { what: 'the hook started', timeoutMs: 30_000 }));

  // The others download while it hangs.
  const rest = await d.rpc('add', { urls: Array.from({ length: n - 1 }, (_, i) => origin.url(`/h${i + 1}.png`)), wait: true });
  t.same(rest.items.map((i) => i.state), Array(n - 1).fill('done'), 'every other job finished');
  t.ok(alive(firstPid), 'while the first hook was still hanging');
  t.equal(fs.readdirSync(pids).length, 1, 'the hook slot is taken (concurrency 1): the later hooks wait');

  // Killed at the limit; the next queued hook then starts.
  await waitFor(() => !alive(firstPid), { what: 'the hung hook killed', timeoutMs: timeoutMs + 20_000 });
  const killedAfter = Date.now() - t0;
  t.ok(killedAfter >= timeoutMs, `not killed before its limit (${killedAfter} ms >= ${timeoutMs})`);
  await waitFor(() => /exec hook over its time limit; killing it/.test(d.stderr()), { what: 'the kill logged' });
  await waitFor(() => /exec hook failed[^\n]*"signal":"SIG(TERM|KILL)"|exec hook failed.*SIGTERM/.test(d.stderr()), { what: 'its end logged with the signal' });
  await waitFor(() => fs.readdirSync(pids).length >= 2, { what: 'the next hook started', timeoutMs: 30_000 });
  const st = await d.rpc('status', {});
  t.equal(st.queue.done, n);
  t.equal((await d.stop()).code, 0, 'a clean stop with hooks still hanging (they are killed)');
  for (const p of fs.readdirSync(pids)) t.notOk(alive(Number(p)), `hook ${p} gone after the stop`);
});
