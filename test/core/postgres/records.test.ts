import t from 'tap';
import { createHash } from 'node:crypto';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { PgRecords } from '../../../src/core/postgres/pg-records.js';
import type { CacheStats, StoredRecord } from '../../../src/core/types.js';
import { emptyStats } from '../../../src/core/types.js';
import { storedRecord } from '../../helpers/media.js';
import { pgServer } from '../../helpers/postgres.js';

const pg = await pgServer(t);

const md5Of = (s: string): string => createHash('md5').update(s).digest('hex');

const rec = (name: string, over: Partial<StoredRecord> = {}): StoredRecord => storedRecord(name, { width: 10, height: 20, ...over });

async function fresh(): Promise<{ db: PgDatabase; records: PgRecords }> {
  const db = await PgDatabase.open({ database: await pg.freshDatabase() });
  t.teardown(() => db.close());
  return { db, records: new PgRecords(db) };
}

/** The totals recomputed from the media table itself, to check the maintained ones against. */
async function scanStats(db: PgDatabase): Promise<CacheStats> {
  const out = emptyStats();
  for (const r of await db.query<{ t: 'image'; n: number; s: number }>(
    'SELECT media_type AS t, count(*)::int8 AS n, coalesce(sum(size), 0)::int8 AS s FROM mediacache.media GROUP BY 1',
  )) {
    out.byType[r.t] = { count: r.n, size: r.s };
    out.totalFiles += r.n;
    out.totalSize += r.s;
  }
  return out;
}

t.test('a record comes back as it was put; optional fields stay absent', async (t) => {
  const { records } = await fresh();
  const full = rec('full', { etag: '"abc"', lastModified: 'Wed, 21 Oct 2015 07:28:00 GMT', urls: ['http://a/1', 'http://a/2'] });
  const bare = rec('bare', { mediaType: 'document', mimeType: 'application/pdf', extension: '.pdf' });
  delete bare.width;
  delete bare.height;
  await records.put(full);
  await records.put(bare);
  t.same(await records.get(full.md5), full);
  const got = await records.get(bare.md5);
  t.same(got, bare);
  t.notOk('width' in got! || 'etag' in got! || 'lastModified' in got!, 'no undefined keys');
  t.equal(await records.get(md5Of('nothing')), undefined);
  await t.rejects(records.get('xyz'), { code: 'E_BAD_REQUEST' });
  await t.rejects(records.put({ ...full, sha256: 'nope' }), { code: 'E_BAD_REQUEST' });
  await t.rejects(records.put({ ...full, fetchedAt: 'yesterday' }), { code: 'E_BAD_REQUEST' });
});

t.test('URL map: a URL belongs to one record; put replaces the list, upsert and addUrl add', async (t) => {
  const { db, records } = await fresh();
  const a = rec('a', { urls: ['http://h/u1', 'http://h/u2'] });
  const b = rec('b', { urls: ['http://h/u2', 'http://h/u3'] });
  await records.put(a);
  await records.put(b);
  t.same((await records.get(a.md5))!.urls, ['http://h/u1'], 'u2 moved to b');
  t.same((await records.getByUrl('http://h/u2'))!.md5, b.md5);
  t.equal(await records.md5ForUrl('http://h/u3'), b.md5);
  t.equal(await records.md5ForUrl('http://h/none'), undefined);
  t.equal(await records.getByUrl('http://h/none'), undefined);

  await records.addUrl(a.md5, 'http://h/u4');
  t.same((await records.get(a.md5))!.urls, ['http://h/u1', 'http://h/u4'], 'first one first');
  await records.put({ ...a, urls: ['http://h/u1'] });
  t.equal(await records.md5ForUrl('http://h/u4'), undefined, 'put drops URLs the record no longer lists');
  await t.rejects(records.addUrl(md5Of('missing'), 'http://h/x'), { code: 'E_NOT_FOUND' });

  const long = `http://h/${'x'.repeat(8000)}`;
  await records.addUrl(a.md5, long);
  t.equal(await records.md5ForUrl(long), a.md5, 'an 8 KiB URL is a key like any other');

  // Two daemons storing the same content from different URLs at once keep both URLs.
  const c = rec('c', { urls: [] });
  await Promise.all(['http://x/1', 'http://x/2', 'http://x/3'].map((u) => records.upsert({ ...c, urls: [u] })));
  t.same((await records.get(c.md5))!.urls.sort(), ['http://x/1', 'http://x/2', 'http://x/3']);

  const seen = await db.query<{ first_seen: Date; last_seen: Date }>('SELECT first_seen, last_seen FROM mediacache.media_url WHERE url = $1', [
    'http://h/u1',
  ]);
  t.ok(seen[0].first_seen <= seen[0].last_seen, 'first/last seen kept');
});

t.test('prefix search is a range on the md5 index', async (t) => {
  const { db, records } = await fresh();
  const all: StoredRecord[] = [];
  for (let i = 0; i < 200; i++) all.push(rec(`p${i}`));
  await records.putMany(all);
  const a = all.filter((r) => r.md5.startsWith('a')).map((r) => r.md5).sort();
  t.ok(a.length > 3);
  t.same((await records.findByPrefix('a')).map((r) => r.md5), a);
  t.same((await records.findByPrefix('A', 2)).map((r) => r.md5), a.slice(0, 2), 'case-insensitive, limited');
  t.same((await records.findByPrefix(all[7].md5)).map((r) => r.md5), [all[7].md5]);
  t.same(await records.findByPrefix('a', 0), []);
  await t.rejects(records.findByPrefix('xyz'), { code: 'E_BAD_REQUEST' });
  await db.query('ANALYZE mediacache.media');
  await db.query('SET enable_seqscan = off'); // on 200 rows the planner would rightly scan; prove the index can serve it
  const plan = (await db.query<{ 'QUERY PLAN': string }>("EXPLAIN SELECT md5 FROM mediacache.media WHERE md5 >= 'ab' AND md5 < 'abg'"))
    .map((r) => r['QUERY PLAN'])
    .join('\n');
  t.match(plan, /Index (Only )?Scan using media_pkey/);
});

t.test('stats stay equal to a full count across put, replace, type change, upsert and remove', async (t) => {
  const { db, records } = await fresh();
  const recs: StoredRecord[] = [];
  for (let i = 0; i < 300; i++) {
    const type = (['image', 'video', 'audio', 'document'] as const)[i % 4];
    recs.push(rec(`s${i}`, { mediaType: type, fileSize: 1000 + i }));
  }
  // One at a time: 300 delta rows, past the fold threshold, so a fold happens on the way.
  for (const r of recs) await records.put(r);
  t.same(await records.stats(), await scanStats(db));
  await records.put({ ...recs[0], fileSize: 5 }); // replace: size change
  await records.put({ ...recs[1], mediaType: 'image' }); // type change
  await records.upsert({ ...recs[2], fileSize: 7, urls: ['http://other/2'] });
  await records.put(recs[3]); // identical: no change
  t.equal(await records.remove(recs[4].md5).then((r) => r?.md5), recs[4].md5);
  t.equal(await records.remove(recs[4].md5), undefined, 'second remove: nothing');
  const want = await scanStats(db);
  t.same(await records.stats(), want);
  t.equal(want.totalFiles, 299);
  t.equal(await records.count(), 299);
  const deltas = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM mediacache.counters WHERE name = 'media'");
  t.ok(deltas[0].n <= 20, `counters folded (${deltas[0].n} rows)`);
  await db.query("SELECT mediacache.fold_counters('media')");
  t.same(await records.stats(), want, 'folding does not change the sums');
});

t.test('remove takes the URLs with it', async (t) => {
  const { records } = await fresh();
  const r = rec('gone', { urls: ['http://g/1', 'http://g/2'] });
  await records.put(r);
  t.same(await records.remove(r.md5), r);
  t.equal(await records.md5ForUrl('http://g/1'), undefined);
  await records.put(rec('again', { urls: ['http://g/1'] }));
  t.equal(await records.md5ForUrl('http://g/1'), md5Of('again'), 'URL free for new content');
});

t.test('records() walks everything in md5 order by pages and resumes after an md5', async (t) => {
  const { records } = await fresh();
  const all: StoredRecord[] = [];
  for (let i = 0; i < 1234; i++) all.push(rec(`w${i}`));
  for (let i = 0; i < all.length; i += 400) await records.putMany(all.slice(i, i + 400));
  const seen: string[] = [];
  for await (const r of records.records({ batchSize: 100 })) seen.push(r.md5);
  const sorted = all.map((r) => r.md5).sort();
  t.same(seen, sorted);
  const rest: string[] = [];
  for await (const r of records.records({ batchSize: 100, after: sorted[999] })) rest.push(r.md5);
  t.same(rest, sorted.slice(1000));
});

t.test('a pipeline can join URLs to media and find the file', async (t) => {
  const { db, records } = await fresh();
  await records.put(rec('j', { urls: ['http://site/post/1.png'] }));
  await db.query('CREATE TABLE public.post_media (post_id int, url text)');
  await db.query("INSERT INTO public.post_media VALUES (1, 'http://site/post/1.png'), (2, 'http://site/post/missing.png')");
  const rows = await db.query(
    `SELECT p.post_id, m.md5, m.size, m.media_type, m.width, m.height, m.storage_path
       FROM public.post_media p
       LEFT JOIN mediacache.media_url u ON u.url = p.url
       LEFT JOIN mediacache.media m ON m.md5 = u.md5
      ORDER BY p.post_id`,
  );
  t.same(rows, [
    { post_id: 1, md5: md5Of('j'), size: 100, media_type: 'image', width: 10, height: 20, storage_path: `images/${md5Of('j')}.png` },
    { post_id: 2, md5: null, size: null, media_type: null, width: null, height: null, storage_path: null },
  ]);
});
