/**
 * `mediacached migrate` (run in-process through runMigrate) on a
 * 10,000-record embedded index with real files: into PostgreSQL, verified
 * there by re-hashing every file, and back into a fresh embedded index.
 */
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { storePath } from '../../../src/core/content/store.js';
import { IndexDb } from '../../../src/core/entry-index/index-db.js';
import type { StoredRecord } from '../../../src/core/types.js';
import { currentPlatformEnv } from '../../../src/core/util/paths.js';
import { runMigrate } from '../../../src/daemon/migrate-cmd.js';
import { pgServer } from '../../helpers/postgres.js';

const N = 10_000;
const pg = await pgServer(t);

function sink(): { write(s: string): void; text: () => string } {
  let buf = '';
  return { write: (s: string) => void (buf += s), text: () => buf };
}

async function migrate(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = sink();
  const err = sink();
  const code = await runMigrate(args, {}, currentPlatformEnv(), out, err);
  return { code, out: out.text(), err: err.text() };
}

/** Small real PDF-like files whose digests the records carry; every tenth record has a second URL. */
async function buildCache(root: string): Promise<StoredRecord[]> {
  const index = await IndexDb.open(path.join(root, 'index'));
  const recs: StoredRecord[] = [];
  fs.mkdirSync(path.join(root, 'documents'), { recursive: true });
  for (let i = 0; i < N; i++) {
    const body = Buffer.from(`%PDF-1.4\n% record ${i}\n%%EOF\n`);
    const rec: StoredRecord = {
      md5: crypto.createHash('md5').update(body).digest('hex'),
      sha256: crypto.createHash('sha256').update(body).digest('hex'),
      fileSize: body.length,
      mimeType: 'application/pdf',
      mediaType: 'document',
      extension: '.pdf',
      urls: i % 10 === 0 ? [`http://origin.invalid/r/${i}.pdf`, `http://mirror.invalid/r/${i}.pdf`] : [`http://origin.invalid/r/${i}.pdf`],
      fetchedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i % 60)).toISOString(),
      verifiedAt: new Date(Date.UTC(2026, 0, 2)).toISOString(),
      ...(i % 7 === 0 ? { pageCount: 1, metadataVersion: 1 } : {}),
    };
    fs.writeFileSync(storePath(root, rec), body);
    index.put(rec);
    recs.push(rec);
  }
  await index.close();
  return recs;
}

t.test('10,000 records to PostgreSQL and back: all records and URLs, verify clean, nothing downloaded', async (t) => {
  const root = t.testdir();
  const url = await pg.freshDatabase();
  const recs = await buildCache(root);

  const to = await migrate(['--to', url, '--cache-dir', root]);
  t.equal(to.code, 0, to.err);
  t.match(to.out, new RegExp(`migrated ${N} records and ${N + N / 10} URLs .* counts and digests match`));
  t.notMatch(to.out, /postgres(ql)?:\/\//, 'the connection URL is not echoed');
  t.comment(to.out.trim().split('\n')[0]);

  const again = await migrate(['--to', url, '--cache-dir', root]);
  t.equal(again.code, 1, 'a second copy into a database with records is refused');
  t.match(again.err, /already holds 10000 records/);

  const cache = await MediaCache.open({ cacheDir: root, database: url });
  t.teardown(() => cache.close());
  t.equal((await cache.stats()).totalFiles, N);
  t.equal((await cache.findByUrl('http://mirror.invalid/r/500.pdf'))?.md5, recs[500].md5, 'second URLs kept');
  t.match(await cache.find(recs[7].md5), { pageCount: 1, metadataVersion: 1 }, 'fields without a column kept');
  // verify --all: every file re-hashed against its record in the database.
  const md5s: string[] = [];
  for await (const r of cache.index.records()) md5s.push(r.md5);
  t.equal(md5s.length, N);
  let bad = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < md5s.length) {
        const r = await cache.verify(md5s[next++]);
        if (!r.ok) bad++;
      }
    }),
  );
  t.equal(bad, 0, 'verify --all clean');
  await cache.close();

  const back = await migrate(['--from', url, '--cache-dir', root, '--index', path.join(root, 'index2')]);
  t.equal(back.code, 0, back.err);
  t.match(back.out, new RegExp(`migrated ${N} records and ${N + N / 10} URLs`));
  const idx = await IndexDb.open(path.join(root, 'index2'));
  t.teardown(() => idx.close());
  t.equal(idx.size, N);
  for (const i of [0, 1, 7, 4999, N - 1]) {
    t.same({ ...idx.get(recs[i].md5), verifiedAt: undefined }, { ...recs[i], verifiedAt: undefined }, `record ${i} round-trips`);
  }
  t.equal(idx.md5ForUrl('http://mirror.invalid/r/9990.pdf'), recs[9990].md5);
});

t.test('usage errors and a missing index', async (t) => {
  const root = t.testdir();
  t.equal((await migrate([])).code, 2);
  t.equal((await migrate(['--to', 'mysql://x/y'])).code, 2);
  t.equal((await migrate(['--to', 'postgres://a/b', '--from', 'postgres://a/b'])).code, 2);
  const r = await migrate(['--to', await pg.freshDatabase(), '--cache-dir', root]);
  t.equal(r.code, 1);
  t.match(r.err, /E_NOT_FOUND no embedded index/);
  t.notOk(fs.existsSync(path.join(root, '.lock')), 'the lock is released');
});
