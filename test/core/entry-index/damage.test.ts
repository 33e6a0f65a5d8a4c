/**
 * Damaged index files with a real cache on disk: what is lost is only what
 * cannot be read back, it is never applied as read, and the adopting sweep
 * re-indexes the files from disk (nothing is quarantined, no URL is refused).
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { IndexDb } from '../../../src/core/entry-index/index-db.js';
import { Sweeper } from '../../../src/core/verify/sweep.js';
import { startOrigin, fixture, type Origin } from '../../helpers/origin.js';

const PNG = fixture('sample.png');
/** Distinct content per n: a valid PNG with bytes after its end (as other tests do). */
const png = (n: number): Buffer => Buffer.concat([PNG, Buffer.from(`tail-${n}`)]);

async function setup(t: Test, n: number): Promise<{ origin: Origin; dir: string; urls: string[]; open: () => Promise<MediaCache> }> {
  const origin = await startOrigin();
  const caches: MediaCache[] = [];
  t.teardown(async () => {
    await origin.close();
    for (const c of caches) await c.close();
  });
  const dir = t.testdir({});
  const urls = Array.from({ length: n }, (_, i) => {
    origin.route(`/f${i}.png`, { body: png(i) });
    return origin.url(`/f${i}.png`);
  });
  const open = async (): Promise<MediaCache> => {
    const c = await MediaCache.open({ cacheDir: dir, retries: 0, timeoutMs: 5000 });
    caches.push(c);
    return c;
  };
  return { origin, dir, urls, open };
}

function flipHexDigit(text: string, at: number): string {
  return text.slice(0, at) + (text[at] === 'a' ? 'b' : 'a') + text.slice(at + 1);
}

t.test('one flipped byte in journal.jsonl: the entry is not applied; the file is re-adopted, never quarantined, its URL not refused', async (t) => {
  const { origin, dir, urls, open } = await setup(t, 3);
  const cache = await open();
  const recs = [];
  for (const u of urls) recs.push(await cache.download(u));
  await cache.close();
  const journal = path.join(dir, 'index', 'journal.jsonl');
  const text = fs.readFileSync(journal, 'utf8');
  const victim = recs[1];
  t.ok(text.includes(victim.sha256), 'the small journal is kept at close (replayed at open)');
  fs.writeFileSync(journal, flipHexDigit(text, text.indexOf(victim.sha256) + 7));

  const again = await open();
  t.ok(again.index.embedded!.needsRebuild, 'an adopting sweep is asked for');
  t.equal(again.index.embedded!.damage.lostRows, 1);
  t.equal(await again.index.get(victim.md5), undefined, 'the damaged entry is not applied as read');
  t.equal((await again.index.get(recs[0].md5))?.sha256, recs[0].sha256, 'the entries that check are');
  const report = await new Sweeper(again, { threads: 1 }).run({ adopt: true });
  t.same(report.quarantined, [], 'no intact file is quarantined');
  t.same(report.adopted, [victim.md5], 're-adopted from the file on disk');
  t.equal((await again.index.get(victim.md5))?.sha256, victim.sha256, 'with the sha256 of its bytes');
  const hitsBefore = origin.hits('/f1.png');
  const back = await again.download(urls[1]);
  t.equal(back.md5, victim.md5, 'the URL is served again (no E_INTEGRITY)');
  t.equal(origin.hits('/f1.png'), hitsBefore + 1, 'fetched once to learn that the URL names this content');
  t.same((await again.index.get(victim.md5))?.urls, [urls[1]]);
  t.ok(fs.existsSync(back.localPath));
});

t.test('one garbled byte in a shard: only that record is lost, and the adopting sweep brings its file back', async (t) => {
  const { dir, urls, open } = await setup(t, 40);
  const cache = await open();
  for (const u of urls) await cache.download(u);
  await cache.close();
  // Fold the journal into the shards (MediaCache leaves a small journal at close).
  await (await IndexDb.open(path.join(dir, 'index'))).close();
  const shards = fs.readdirSync(path.join(dir, 'index', 'records')).filter((f) => f.endsWith('.jsonl'));
  const file = path.join(dir, 'index', 'records', shards[0]);
  const text = fs.readFileSync(file, 'utf8');
  // A byte in the middle of the first row's URL.
  const at = text.indexOf('http://') + 12;
  fs.writeFileSync(file, text.slice(0, at) + '\u0007' + text.slice(at + 1));

  const again = await open();
  t.equal(again.index.embedded!.damage.lostRows, 1);
  t.equal(again.index.embedded!.damage.files.length, 1, 'a copy of the damaged shard is kept');
  t.equal((await again.stats()).totalFiles, 39, 'every other record is kept');
  const report = await new Sweeper(again, { threads: 1 }).run({ adopt: true });
  t.equal(report.adopted.length, 1);
  t.same(report.quarantined, []);
  t.equal((await again.stats()).totalFiles, 40, 'index and disk agree again');
});
