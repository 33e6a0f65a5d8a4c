/**
 * getMany / getManyByUrl, the batched reads of the daemon's `add` and of the
 * cluster's job watch: the same answers as one get / getByUrl per key, on the
 * embedded store and on PostgreSQL (one round trip per 1,000 keys there).
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IndexDb } from '../../../src/core/entry-index/index-db.js';
import { EmbeddedEntryStore, type EntryStore } from '../../../src/core/entry-index/store.js';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { PgEntryStore } from '../../../src/core/postgres/pg-store.js';
import { storedRecord } from '../../helpers/media.js';
import { pgServer } from '../../helpers/postgres.js';
import type { Teardownable } from '../../helpers/daemon.js';

const pg = await pgServer(t);

async function embedded(t: Teardownable): Promise<EntryStore> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-store-many-'));
  const store = new EmbeddedEntryStore(await IndexDb.open(dir));
  t.teardown(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return store;
}

async function postgres(t: Teardownable): Promise<EntryStore> {
  const store = new PgEntryStore(await PgDatabase.open({ database: await pg.freshDatabase() }), true);
  t.teardown(() => store.close());
  return store;
}

for (const [kind, open] of [['embedded', embedded], ['postgres', postgres]] as const) {
  t.test(`${kind}: many keys in one call answer as one get each`, async (t) => {
    const store = await open(t);
    const a = storedRecord('many-a', { urls: ['http://127.0.0.1/a1', 'http://127.0.0.1/a2'] });
    const b = storedRecord('many-b', { urls: ['http://127.0.0.1/b'] });
    await store.put(a);
    await store.put(b);
    const unknownMd5 = 'f'.repeat(32);

    const byMd5 = await store.getMany([b.md5, unknownMd5, a.md5, a.md5]);
    t.same([...byMd5.keys()].sort(), [a.md5, b.md5].sort(), 'unknown md5 left out, duplicates once');
    t.same(byMd5.get(a.md5), await store.get(a.md5));
    t.same(byMd5.get(b.md5), await store.get(b.md5));

    const urls = ['http://127.0.0.1/a2', 'http://127.0.0.1/none', 'http://127.0.0.1/b', 'http://127.0.0.1/a1'];
    const byUrl = await store.getManyByUrl(urls);
    t.same([...byUrl.keys()].sort(), ['http://127.0.0.1/a1', 'http://127.0.0.1/a2', 'http://127.0.0.1/b'], 'unmapped URL left out');
    for (const u of urls) t.same(byUrl.get(u), await store.getByUrl(u), `same record as getByUrl(${u})`);
    t.same(byUrl.get('http://127.0.0.1/a1')!.urls, a.urls, 'the record with every URL, in order');

    t.same(await store.getMany([]), new Map());
    t.same(await store.getManyByUrl([]), new Map());
  });
}

t.test('postgres: more keys than one round trip holds (1,000) are all answered', async (t) => {
  const store = await postgres(t);
  const recs = Array.from({ length: 1201 }, (_, i) => storedRecord(`bulk-${i}`, { urls: [`http://127.0.0.1/bulk/${i}`] }));
  for (let i = 0; i < recs.length; i += 200) await Promise.all(recs.slice(i, i + 200).map((r) => store.put(r)));
  const byMd5 = await store.getMany(recs.map((r) => r.md5));
  t.equal(byMd5.size, 1201);
  const byUrl = await store.getManyByUrl(recs.map((r) => r.urls[0]!));
  t.equal(byUrl.size, 1201);
  t.ok(
    recs.every((r) => byUrl.get(r.urls[0]!)?.md5 === r.md5 && byMd5.get(r.md5)?.md5 === r.md5),
    'every key maps to its own record',
  );
  await t.rejects(store.getMany(['nope']), { code: 'E_BAD_REQUEST' }, 'a bad md5 is refused');
});
