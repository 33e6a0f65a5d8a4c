/**
 * MediaCache on the PostgreSQL EntryStore (cluster mode), against a real
 * server: two instances on one content root and one database act as two
 * daemons of a cluster.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { Sweeper } from '../../../src/core/verify/sweep.js';
import { PgDatabase } from '../../../src/core/postgres/index.js';
import { fixture, startOrigin, type Origin } from '../../helpers/origin.js';
import { mediaBody, md5Of } from '../../helpers/media.js';
import { pgServer } from '../../helpers/postgres.js';

const pg = await pgServer(t);
let origin: Origin;
t.before(async () => {
  origin = await startOrigin();
});
t.teardown(() => origin.close());

async function twoCaches(t: Test, url: string): Promise<{ root: string; a: MediaCache; b: MediaCache }> {
  const root = t.testdir();
  const a = await MediaCache.open({ cacheDir: root, database: url, retries: 0 });
  t.teardown(() => a.close());
  const b = await MediaCache.open({ cacheDir: root, database: url, retries: 0 });
  t.teardown(() => b.close());
  return { root, a, b };
}

function contentFiles(root: string): string[] {
  const out: string[] = [];
  for (const dir of ['images', 'videos', 'audio', 'documents']) {
    const p = path.join(root, dir);
    if (fs.existsSync(p)) for (const n of fs.readdirSync(p)) out.push(`${dir}/${n}`);
  }
  return out.sort();
}

t.test('two instances share one root without a writer lock; records and lookups come from the database', async (t) => {
  const url = await pg.freshDatabase();
  const { root, a, b } = await twoCaches(t, url);
  t.notOk(fs.existsSync(path.join(root, '.lock')), 'no one-writer lock in database mode');
  t.notOk(fs.existsSync(path.join(root, 'index')), 'no embedded index');
  const body = fixture('sample.jpg');
  origin.route('/p1.jpg', { body, headers: { etag: '"v1"' } });
  const rec = await a.download(origin.url('/p1.jpg'));
  t.equal(rec.md5, md5Of(body));
  t.match(rec, { mediaType: 'image', width: 64, height: 48, etag: '"v1"' });
  const seen = await b.findByUrl(origin.url('/p1.jpg'));
  t.same(seen, { ...rec, lastUsedAt: seen?.lastUsedAt }, 'the other instance finds the whole record (columns and extra fields)');
  t.equal((await b.find(rec.md5.slice(0, 10)))?.md5, rec.md5, 'prefix lookup');
  const hit = await b.download(origin.url('/p1.jpg'));
  t.equal(hit.md5, rec.md5);
  t.equal(origin.hits('/p1.jpg'), 1, 'answered from the common index and root, not fetched again');
  const stats = await a.stats();
  t.equal(stats.totalFiles, 1);
  t.equal(stats.byType.image.size, body.length);
});

t.test('the same content through two instances and three URLs at once: one file, one record with every URL', async (t) => {
  const url = await pg.freshDatabase();
  const { root, a, b } = await twoCaches(t, url);
  const body = mediaBody('same-content', 200_000);
  for (const p of ['/s1.png', '/s2.png', '/s3.png']) origin.route(p, { body, bytesPerSec: 400_000 });
  const recs = await Promise.all([
    a.download(origin.url('/s1.png')),
    b.download(origin.url('/s2.png')),
    a.download(origin.url('/s3.png')),
    b.download(origin.url('/s1.png')),
  ]);
  t.ok(recs.every((r) => r.md5 === md5Of(body)));
  t.same(contentFiles(root), [`images/${md5Of(body)}.png`], 'one file');
  const rec = await a.find(md5Of(body));
  t.same(rec?.urls.slice().sort(), ['/s1.png', '/s2.png', '/s3.png'].map((p) => origin.url(p)).sort(), 'no URL lost to a concurrent writer');
  t.equal((await b.stats()).totalFiles, 1);
  t.same(fs.readdirSync(path.join(root, '.tmp')).filter((n) => !n.startsWith('host-')), [], 'partial files live in per-host folders');
});

t.test('verify, a sweep and remove work on database records', async (t) => {
  const url = await pg.freshDatabase();
  const { root, a, b } = await twoCaches(t, url);
  const bodies = [0, 1, 2].map((i) => mediaBody(`sweep${i}`, 10_000 + i));
  bodies.forEach((body, i) => origin.route(`/w${i}.png`, { body }));
  const recs = await Promise.all(bodies.map((_, i) => a.download(origin.url(`/w${i}.png`))));
  t.equal((await b.verify(recs[0].md5)).ok, true);
  // Damage one file: the sweep of the other instance finds it, quarantines it and repairs it from its URL.
  fs.writeFileSync(recs[1].localPath, Buffer.alloc(recs[1].fileSize, 7));
  const report = await new Sweeper(b).run({});
  t.same(report.corrupt, [recs[1].md5], 'corrupt file found');
  t.same(report.repaired.map((r) => r.md5), [recs[1].md5], 'and repaired');
  t.equal(md5Of(fs.readFileSync(recs[1].localPath)), recs[1].md5);
  // An orphan file (renamed into place, record lost): adopted into the database.
  const orphan = mediaBody('orphan', 12_000);
  fs.writeFileSync(path.join(root, 'images', `${md5Of(orphan)}.png`), orphan);
  const again = await new Sweeper(a).run({ adopt: true });
  t.same(again.adopted, [md5Of(orphan)]);
  t.equal((await b.find(md5Of(orphan)))?.fileSize, orphan.length);
  const removed = await b.remove(recs[2].md5);
  t.equal(removed.md5, recs[2].md5);
  t.equal(await a.find(recs[2].md5), undefined, 'gone for the other instance too');
  t.notOk(fs.existsSync(recs[2].localPath));
  t.equal((await a.stats()).totalFiles, 3);
});

t.test('cluster mode refuses size limits, and a pool passed in stays open', async (t) => {
  const url = await pg.freshDatabase();
  await t.rejects(MediaCache.open({ cacheDir: t.testdir(), database: url, maxSize: 1e9 }), { code: 'E_BAD_REQUEST', message: /size limits/ });
  const db = await PgDatabase.open({ database: url });
  t.teardown(() => db.close());
  const c = await MediaCache.open({ cacheDir: t.testdir(), database: db });
  t.equal(c.database, db);
  await c.close();
  t.same(await db.query('SELECT 1 AS x'), [{ x: 1 }], 'not closed by the cache');
});
