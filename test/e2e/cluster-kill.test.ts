/**
 * kill -9 of a daemon in the middle of its jobs (cluster mode): the other
 * daemon finishes them once their leases expire; nothing is lost or stored
 * twice; the killed daemon, restarted, rejoins under its node id.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startOrigin } from '../helpers/origin.js';
import { mediaBody, md5Of } from '../helpers/media.js';
import { startDaemon, makeRoot } from '../helpers/daemon.js';
import { pgServer } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const pg = await pgServer(t);

t.test('kill -9 one daemon mid-jobs: the other finishes them within the lease; the killed one rejoins', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = new Map<string, Buffer>();
  for (let i = 0; i < 4; i++) {
    const body = mediaBody(`kill${i}`, 60_000);
    bodies.set(`/k${i}.png`, body);
    // About 10 s per file: still running when its daemon is killed.
    origin.route(`/k${i}.png`, { body, bytesPerSec: 6000 });
  }
  const url = await pg.freshDatabase();
  const shared = makeRoot();
  t.teardown(() => fs.rmSync(shared, { recursive: true, force: true }));
  const cacheDir = path.join(shared, 'content');
  const args = ['--database', url, '--concurrency', '4', '--per-host', '4', '--timeout', '60000'];
  const rootA = makeRoot();
  t.teardown(() => fs.rmSync(rootA, { recursive: true, force: true }));
  let a = await startDaemon(t, { root: rootA, cacheDir, args });
  const idA = (await a.rpc('status', {})).cluster!.nodeId;
  const urls = [...bodies.keys()].map((p) => origin.url(p));
  await a.rpc('add', { urls });
  await waitFor(async () => (await a.rpc('status', {})).active.length === 4, { timeoutMs: 30_000, what: 'a runs all four' });
  const b = await startDaemon(t, { cacheDir, args });
  a.kill('SIGKILL');
  await a.exited;
  const killedAt = Date.now();
  await waitFor(async () => (await b.rpc('status', {})).cluster!.queue.done === 4, { timeoutMs: 90_000, what: 'b finishes the jobs' });
  const took = Date.now() - killedAt;
  t.comment(`taken over and finished ${took} ms after the kill (lease 30 s, each file about 10 s)`);
  t.ok(took < 30_000 + 40_000, 'within the lease plus the downloads');
  const st = await b.rpc('status', {});
  t.same(st.cluster!.queue, { queued: 0, running: 0, done: 4, failed: 0 }, 'nothing lost');
  const jobs = (await b.rpc('jobs', { state: 'done', limit: 10 })).jobs;
  t.equal(new Set(jobs.map((j) => j.url)).size, 4, 'one job per URL');
  t.same(fs.readdirSync(path.join(cacheDir, 'images')).sort(), [...bodies.values()].map((x) => `${md5Of(x)}.png`).sort(), 'each content stored once');
  t.equal((await b.rpc('stats', {})).totalFiles, 4);
  const idB = st.cluster!.nodeId;
  t.equal(st.cluster!.nodes.find((n) => n.id === idB)?.done, 4, "the survivor's share");

  a = await startDaemon(t, { root: rootA, cacheDir, args });
  const again = await a.rpc('status', {});
  t.equal(again.cluster!.nodeId, idA, 'the restarted daemon rejoins as itself');
  t.ok(again.cluster!.nodes.find((n) => n.id === idA)?.alive, 'and is alive');
});
