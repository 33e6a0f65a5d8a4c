/**
 * End to end: the daemon is SIGKILLed halfway through a 64 MiB download; the
 * next daemon continues from the partial left in .tmp/ (Range + If-Range)
 * instead of fetching the body again.
 */
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { makeRoot, startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { RangeResource } from '../helpers/range-origin.js';
import { md5Of } from '../helpers/media.js';
import { waitFor } from '../helpers/wait.js';
import { CHECKPOINT_BYTES } from '../../src/core/fetch/resume.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

function partialBytes(cacheDir: string): number {
  const dir = path.join(cacheDir, '.tmp');
  if (!fs.existsSync(dir)) return 0;
  return fs
    .readdirSync(dir)
    .filter((n) => n.startsWith('r-') && n.endsWith('.part'))
    .reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

t.test('kill -9 at ~50% of a 64 MiB download, restart: resumed from the kept offset', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const png = fixture('sample.png');
  const res = new RangeResource(Buffer.concat([png, crypto.randomBytes(SIZE - png.length)]));
  res.bytesPerSec = 12 * MiB; // ~5 s for the body: time to kill it halfway
  origin.route('/big.png', res.handler);
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const d1 = await startDaemon(t, { root });
  await d1.rpc('add', { urls: [origin.url('/big.png')] });
  await waitFor(() => partialBytes(d1.cacheDir) >= SIZE / 2, { timeoutMs: 60_000, intervalMs: 10, what: 'half the body in .tmp/' });
  d1.kill('SIGKILL');
  t.equal((await d1.exited).signal, 'SIGKILL');
  const kept = partialBytes(d1.cacheDir);
  t.ok(kept >= SIZE / 2, `partial of ${kept} bytes left in .tmp/`);
  const sidecars = fs.readdirSync(path.join(d1.cacheDir, '.tmp')).filter((n) => n.endsWith('.json'));
  t.equal(sidecars.length, 1, 'with its sidecar');

  res.bytesPerSec = 0;
  const d2 = await startDaemon(t, { root });
  const rec = await waitFor(
    async () => {
      try {
        return await d2.rpc('find', { url: origin.url('/big.png') });
      } catch {
        return undefined;
      }
    },
    { timeoutMs: 120_000, intervalMs: 100, what: 'the download to finish after the restart' },
  );
  t.equal(rec.md5, md5Of(res.body), 'md5 right');
  t.equal(md5Of(fs.readFileSync(rec.localPath)), rec.md5, 'file right');
  const resumed = res.log.find((e) => e.range !== undefined);
  t.ok(resumed, 'the origin saw a Range request');
  t.equal(resumed!.status, 206);
  t.equal(resumed!.ifRange, res.etag, 'with If-Range');
  t.ok(resumed!.start >= SIZE / 2 - CHECKPOINT_BYTES - MiB, `from the kept offset (${resumed!.start}, at most one checkpoint behind)`);
  t.ok(res.served < SIZE * 1.3, `bytes served ${res.served}: about one body (${(res.served / SIZE).toFixed(2)}x), not two`);
  await waitFor(() => fs.readdirSync(path.join(d2.cacheDir, '.tmp')).length === 0, { what: '.tmp/ empty' });
  t.equal((await d2.stop()).code, 0);
});
