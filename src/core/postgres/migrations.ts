/**
 * Versioned schema migrations, in code. At open every daemon runs migrate():
 * one transaction that first takes a transaction-scoped advisory lock, so of
 * several daemons starting at once one applies the missing versions and the
 * others wait for it, then find nothing left to do. A failed migration rolls
 * back whole (PostgreSQL DDL is transactional): the schema is never half-way.
 *
 * A database whose schema is newer than this build knows is refused: an older
 * daemon must not write rows whose meaning has moved on.
 */
import os from 'node:os';
import { MediaCacheError } from '../errors.js';
import type { PgDatabase } from './pg-db.js';
import { SCHEMA_V1 } from './schema-v1.js';
import { SCHEMA_V2 } from './schema-v2.js';
import { SCHEMA_V3 } from './schema-v3.js';
import { SCHEMA_V4 } from './schema-v4.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** In order; append only. A released migration is never edited. */
export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'initial schema', sql: SCHEMA_V1 },
  { version: 2, name: 'record fields without a column (media.extra)', sql: SCHEMA_V2 },
  { version: 3, name: 'inbox batches shared by a cluster (batches.state taking, ident, refused)', sql: SCHEMA_V3 },
  { version: 4, name: 'claim round in one call (claim_jobs)', sql: SCHEMA_V4 },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** Advisory lock (classid, objid) serializing migrators of one database. */
const MIGRATION_LOCK: readonly [number, number] = [1835283300, 0];

export interface MigrationResult {
  /** Version found (0: empty database). */
  from: number;
  to: number;
  applied: number[];
}

/** Bring the schema to the last of `migrations` (tests pass a longer list to act as a newer build). */
export async function migrate(db: PgDatabase, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationResult> {
  const known = migrations[migrations.length - 1]?.version ?? 0;
  const result = await db.tx(async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1, $2)', [...MIGRATION_LOCK]);
    const exists = await c.query<{ t: string | null }>("SELECT to_regclass('mediacache.schema_version')::text AS t");
    if (exists.rows[0].t === null) {
      await c.query('CREATE SCHEMA IF NOT EXISTS mediacache');
      await c.query(`CREATE TABLE mediacache.schema_version (
        version    integer PRIMARY KEY,
        name       text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        applied_by text
      )`);
    }
    const cur = await c.query<{ v: number | null }>('SELECT max(version) AS v FROM mediacache.schema_version');
    const from = cur.rows[0].v ?? 0;
    if (from > known) {
      throw new MediaCacheError(
        'E_UNAVAILABLE',
        `the database schema is version ${from} but this mediacache knows only up to version ${known}: ` +
          'upgrade mediacache on this machine (every daemon of a cluster must run a version that knows the schema)',
      );
    }
    const applied: number[] = [];
    for (const m of migrations) {
      if (m.version <= from) continue;
      await c.query(m.sql);
      await c.query('INSERT INTO mediacache.schema_version (version, name, applied_by) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        `${os.hostname()}:${process.pid}`,
      ]);
      applied.push(m.version);
    }
    return { from, to: Math.max(from, known), applied };
  });
  if (result.applied.length > 0) db.logger.info('database schema migrated', { target: db.target, ...result });
  return result;
}

/** The schema version of the database, 0 when it has none. */
export async function schemaVersion(db: PgDatabase): Promise<number> {
  const rows = await db.query<{ t: string | null }>("SELECT to_regclass('mediacache.schema_version')::text AS t");
  if (rows[0].t === null) return 0;
  const v = await db.query<{ v: number | null }>('SELECT max(version) AS v FROM mediacache.schema_version');
  return v[0].v ?? 0;
}
