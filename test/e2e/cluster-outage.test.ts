/**
 * The database stopped and restarted under load (cluster mode): the daemon
 * keeps running and keeps its queued work, answers E_UNAVAILABLE to clients
 * while the database is away, then reconnects and finishes every job.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startOrigin } from '../helpers/origin.js';
import { mediaBody, md5Of } from '../helpers/media.js';
import { startDaemon, makeRoot, RpcError } from '../helpers/daemon.js';
import { pgServer } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const pg = await pgServer(t, { durable: true });

t.test('database restart under load: E_UNAVAILABLE meanwhile, then every job done once', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const bodies = new Map<string, Buffer>();
  for (let i = 0; i < 12; i++) {
    const body = mediaBody(`outage${i}`, 20_000);
    bodies.set(`/o${i}.png`, body);
    origin.route(`/o${i}.png`, { body, bytesPerSec: 20_000 });
  }
  const url = await pg.freshDatabase();
  const shared = makeRoot();
  t.teardown(() => fs.rmSync(shared, { recursive: true, force: true }));
  const cacheDir = path.join(shared, 'content');
  const d = await startDaemon(t, { cacheDir, args: ['--database', url, '--concurrency', '3', '--per-host', '3', '--retry-delay', '1s'] });
  await d.rpc('add', { urls: [...bodies.keys()].map((p) => origin.url(p)) });
  await waitFor(async () => (await d.rpc('status', {})).cluster!.queue.done >= 1, { timeoutMs: 30_000, what: 'work under way' });

  await pg.stop('fast');
  const err = await d.rpc('stats', {}).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, RpcError);
  t.equal((err as RpcError).data?.code, 'E_UNAVAILABLE', 'clients are told the store is unavailable');
  t.equal(d.exitStatus(), undefined, 'the daemon keeps running');
  await pg.start();

  await waitFor(async () => (await d.rpc('status', {})).cluster?.queue.done === bodies.size, { timeoutMs: 90_000, intervalMs: 250, what: 'every job done after the restart' }).catch(
    async (e: unknown) => {
      t.comment(JSON.stringify((await d.rpc('status', {})).cluster?.queue));
      throw e;
    },
  );
  const st = await d.rpc('status', {});
  t.same(st.cluster!.queue, { queued: 0, running: 0, done: bodies.size, failed: 0 }, 'nothing lost');
  t.same(fs.readdirSync(path.join(cacheDir, 'images')).sort(), [...bodies.values()].map((b) => `${md5Of(b)}.png`).sort(), 'each content once');
  t.equal((await d.rpc('stats', {})).totalFiles, bodies.size, 'the database agrees with the files');
});
