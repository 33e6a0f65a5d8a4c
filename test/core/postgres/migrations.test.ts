import t from 'tap';
import { MediaCacheError } from '../../../src/core/errors.js';
import { PgDatabase } from '../../../src/core/postgres/pg-db.js';
import { MIGRATIONS, SCHEMA_VERSION, migrate, schemaVersion, type Migration } from '../../../src/core/postgres/migrations.js';
import { pgServer } from '../../helpers/postgres.js';

const pg = await pgServer(t);

async function open(database: string, opts: { migrate?: boolean } = {}): Promise<PgDatabase> {
  const db = await PgDatabase.open({ database, ...opts });
  t.teardown(() => db.close());
  return db;
}

const V2: Migration = { version: SCHEMA_VERSION + 1, name: 'pinned', sql: 'ALTER TABLE mediacache.media ADD COLUMN pinned boolean NOT NULL DEFAULT false' };

t.test('a fresh database gets the whole schema; a second open changes nothing', async (t) => {
  const url = await pg.freshDatabase();
  const db = await open(url);
  t.same(db.migration, { from: 0, to: SCHEMA_VERSION, applied: MIGRATIONS.map((m) => m.version) });
  const tables = (await db.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'mediacache' ORDER BY 1")).map((r) => r.t);
  t.same(tables, ['batches', 'cluster_locks', 'counters', 'hosts', 'jobs', 'media', 'media_url', 'nodes', 'schema_version']);
  const again = await open(url);
  t.same(again.migration, { from: SCHEMA_VERSION, to: SCHEMA_VERSION, applied: [] });
  t.equal(await schemaVersion(again), SCHEMA_VERSION);
  const rows = await db.query('SELECT version FROM mediacache.schema_version');
  t.equal(rows.length, MIGRATIONS.length, 'each version recorded once');
});

t.test('three daemons starting at once: one migrates, the others wait and find it done', async (t) => {
  const url = await pg.freshDatabase();
  const dbs = await Promise.all([0, 1, 2].map(() => open(url)));
  const applied = dbs.map((d) => d.migration!.applied.length).sort();
  t.same(applied, [0, 0, MIGRATIONS.length]);
  t.ok(dbs.every((d) => d.migration!.to === SCHEMA_VERSION));
  const rows = await dbs[0].query<{ version: number }>('SELECT version FROM mediacache.schema_version ORDER BY 1');
  t.same(rows.map((r) => r.version), MIGRATIONS.map((m) => m.version));
});

t.test('a newer build migrates forward; an older one then refuses the database, naming both versions', async (t) => {
  const url = await pg.freshDatabase();
  await open(url);
  const newer = await open(url, { migrate: false });
  t.same(await migrate(newer, [...MIGRATIONS, V2]), { from: SCHEMA_VERSION, to: V2.version, applied: [V2.version] });
  const cols = await newer.query("SELECT 1 FROM information_schema.columns WHERE table_schema = 'mediacache' AND table_name = 'media' AND column_name = 'pinned'");
  t.equal(cols.length, 1, 'v2 column present');
  const err = await PgDatabase.open({ database: url }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof MediaCacheError, 'refused');
  const e = err as MediaCacheError;
  t.equal(e.code, 'E_UNAVAILABLE');
  t.equal(e.retryable, false, 'waiting will not fix it');
  t.match(e.message, new RegExp(`version ${V2.version}\\b.*up to version ${SCHEMA_VERSION}\\b`));
  t.match(e.message, /upgrade mediacache/);
});

t.test('a migration that fails rolls back whole', async (t) => {
  const url = await pg.freshDatabase();
  const db = await open(url);
  const bad: Migration = { version: SCHEMA_VERSION + 1, name: 'broken', sql: 'CREATE TABLE mediacache.half (x int); SELECT no_such_function()' };
  await t.rejects(migrate(db, [...MIGRATIONS, bad]), { code: 'E_UNAVAILABLE', message: /no_such_function/ });
  t.equal(await schemaVersion(db), SCHEMA_VERSION);
  t.same(await db.query("SELECT to_regclass('mediacache.half') AS t"), [{ t: null }], 'no half-applied table');
});

t.test('an unreachable server is E_UNAVAILABLE (retryable) naming where it tried, without the password', async (t) => {
  const url = `postgresql://postgres:secret@/nodb?host=${encodeURIComponent(pg.socketDir + '/missing')}&port=5432`;
  const err = (await PgDatabase.open({ database: url, connectTimeoutMs: 2000 }).catch((e: unknown) => e)) as MediaCacheError;
  t.ok(err instanceof MediaCacheError);
  t.equal(err.code, 'E_UNAVAILABLE');
  t.equal(err.retryable, true);
  t.match(err.message, /database unavailable \(nodb on .*missing:5432\)/);
  t.notMatch(err.message, /secret/);
});
