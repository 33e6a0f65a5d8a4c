/**
 * The spawned daemon with damaged or missing state on disk: a cached file
 * deleted by hand is fetched again rather than answered from the index, and
 * a deleted index shard is noticed at start-up (reported in `status`, repaired
 * by an adopting sweep at once, not at the next scheduled sweep).
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { IndexDb } from '../../src/core/entry-index/index-db.js';
import { startDaemon } from '../helpers/daemon.js';
import { fixture, startOrigin } from '../helpers/origin.js';
import { waitFor } from '../helpers/wait.js';

const PNG = fixture('sample.png');
const png = (n: number): Buffer => Buffer.concat([PNG, Buffer.from(`tail-${n}`)]);

t.test('add of a cached URL whose file was deleted fetches it again', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/a.png', { body: png(1) });
  const d = await startDaemon(t);
  const url = origin.url('/a.png');
  const first = await d.rpc('add', { urls: [url], wait: true });
  const rec = first.items[0].record!;
  t.ok(fs.existsSync(rec.localPath));
  fs.rmSync(rec.localPath);

  const again = await d.rpc('add', { urls: [url] });
  t.not(again.items[0].cached, true, 'not answered from the index: the file is gone');
  t.ok(again.items[0].jobId, 'queued for a download');
  const waited = await d.rpc('add', { urls: [url], wait: true });
  t.equal(waited.items[0].state, 'done');
  t.equal(waited.items[0].record?.md5, rec.md5);
  t.ok(fs.existsSync(rec.localPath), 'the file is back');
  t.equal(origin.hits('/a.png'), 2);
  const hit = await d.rpc('add', { urls: [url] });
  t.equal(hit.items[0].cached, true, 'a present file is a cache hit again');
});

t.test('a deleted index shard is noticed at start: reported in status, re-adopted at once', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  const urls = Array.from({ length: 40 }, (_, i) => {
    origin.route(`/f${i}.png`, { body: png(i) });
    return origin.url(`/f${i}.png`);
  });
  const d = await startDaemon(t);
  await d.rpc('add', { urls, wait: true });
  t.same(await d.stop(), { code: 0, signal: null });
  const indexDir = path.join(d.cacheDir, 'index');
  // Fold the journal into the shards (the daemon leaves a small journal at shutdown).
  await (await IndexDb.open(indexDir)).close();
  const shard = fs.readdirSync(path.join(indexDir, 'records')).find((f) => /^[0-9a-f]{2}\.jsonl$/.test(f))!;
  fs.rmSync(path.join(indexDir, 'records', shard));

  const d2 = await startDaemon(t, { root: d.root });
  const st = await d2.rpc('status', {});
  t.same(st.damage?.index.missingShards, [shard.slice(0, 2)], 'status names the missing shard');
  // The first daemon's own start-up sweep is kept in last-sweep.json: wait for one started by this daemon.
  const since = Date.parse(st.startedAt);
  await waitFor(
    async () => {
      const last = (await d2.rpc('status', {})).lastSweep;
      return last !== undefined && Date.parse(last.startedAt) >= since;
    },
    { what: 'the adopting sweep at start-up', timeoutMs: 60_000 },
  );
  const stats = await d2.rpc('stats', {});
  t.equal(stats.totalFiles, 40, 'every file is indexed again');
  t.match(d2.stderr(), /a shard file is missing/);
});
