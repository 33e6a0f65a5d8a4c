/**
 * End to end: mediacached with --max-size, and mcctl's quota commands
 * (add --pin, pin, unpin, refresh, stats/status/find showing the quota).
 */
import t from 'tap';
import fs from 'node:fs';
import { startDaemon } from '../helpers/daemon.js';
import { startOrigin } from '../helpers/origin.js';
import { mediaBody, md5Of } from '../helpers/media.js';
import { filesOnDisk, mcctl } from './mcctl-helpers.js';
import type { RefreshResult, StatsResult } from '../../src/core/protocol/rpc.js';
import type { MediaRecord } from '../../src/core/types.js';

const KiB = 1024;

t.test('daemon with --max-size: eviction, pinning, revalidation through mcctl', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const size = 300 * KiB;
  const N = 10;
  const bodies = Array.from({ length: N }, (_, i) => mediaBody(`daemon-${i}`, size));
  bodies.forEach((b, i) => origin.route(`/f/${i}`, { body: b, headers: { etag: `"e${i}"` } }));
  // An origin that answers If-None-Match with 304.
  const tagged = mediaBody('tagged', 100 * KiB);
  let tagged200 = 0;
  origin.route('/tagged', (req, res) => {
    if (req.headers['if-none-match'] === '"t1"') {
      res.writeHead(304, { etag: '"t1"' });
      return void res.end();
    }
    tagged200++;
    res.writeHead(200, { etag: '"t1"', 'content-length': tagged.length });
    res.end(tagged);
  });
  const d = await startDaemon(t, { args: ['--max-size', '1M'] });

  // add --pin: pinned once cached.
  const pinned = await mcctl(d, ['add', origin.url('/f/0'), '--pin', '--wait', '--json']);
  t.equal(pinned.code, 0, pinned.stderr);
  t.equal((JSON.parse(pinned.stdout) as { items: Array<{ record: MediaRecord }> }).items[0]!.record.pinned, true, 'add --pin');
  for (let i = 1; i < N; i++) {
    const r = await d.rpc('add', { urls: [origin.url(`/f/${i}`)], wait: true });
    t.equal(r.items[0]!.state, 'done');
  }
  const stats = JSON.parse((await mcctl(d, ['stats', '--json'])).stdout) as StatsResult;
  t.ok(stats.totalSize <= 1024 * KiB, `used ${stats.totalSize} within --max-size`);
  t.same(filesOnDisk(d.cacheDir), { count: stats.totalFiles, size: stats.totalSize }, 'stats match the disk');
  t.equal(stats.quota?.maxSize, 1024 * KiB, 'stats --json has the quota');
  t.same(stats.pinned, { count: 1, size });
  t.ok((stats.evicted?.count ?? 0) >= N - 3, `evicted ${stats.evicted?.count}`);
  t.match((await mcctl(d, ['stats'])).stdout, /evicted: \d+ records/);
  t.match((await mcctl(d, ['status'])).stdout, /quota\s+.*used, max 1\.0 MiB/);

  const pinnedRec = JSON.parse((await mcctl(d, ['find', origin.url('/f/0'), '--json'])).stdout) as MediaRecord;
  t.equal(pinnedRec.evictedAt, undefined, 'the pinned file (the oldest) survived');
  const gone = await mcctl(d, ['find', origin.url('/f/1')]);
  t.match(gone.stdout, /EVICTED/, 'find says what happened');

  // Re-adding an evicted URL downloads it again.
  const before = origin.hits('/f/1');
  const again = await d.rpc('add', { urls: [origin.url('/f/1')], wait: true });
  t.equal(origin.hits('/f/1'), before + 1, 're-downloaded');
  t.ok(again.items[0]!.record?.restoredAt, 'the record says so');
  t.equal(again.items[0]!.record?.md5, md5Of(bodies[1]!));

  // unpin / pin by md5 prefix.
  const un = await mcctl(d, ['unpin', pinnedRec.md5.slice(0, 12)]);
  t.equal(un.code, 0, un.stderr);
  t.match(un.stdout, /^unpinned [0-9a-f]{32}/);
  const re = JSON.parse((await mcctl(d, ['pin', origin.url('/f/0'), '--json'])).stdout) as { record: MediaRecord };
  t.equal(re.record.pinned, true);

  // refresh: a 304 moves no body.
  await d.rpc('add', { urls: [origin.url('/tagged')], wait: true });
  const ref = await mcctl(d, ['refresh', origin.url('/tagged'), '--json']);
  t.equal(ref.code, 0, ref.stderr);
  const items = (JSON.parse(ref.stdout) as RefreshResult).items;
  t.equal(items[0]!.state, 'not-modified');
  t.equal(tagged200, 1, 'one body only');
  t.match((await mcctl(d, ['refresh', origin.url('/tagged')])).stdout, /not modified \(304\)/);
  const bad = await mcctl(d, ['pin', 'not-an-md5']);
  t.equal(bad.code, 2, 'a bad target is a usage error / bad params');
  t.ok(fs.existsSync(d.cacheDir));
  t.equal((await d.stop()).code, 0);
});
