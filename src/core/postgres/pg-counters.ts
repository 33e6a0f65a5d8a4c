/**
 * Totals kept as appended deltas (schema-v1.ts, table counters): writers
 * never wait for each other on a shared row, and a read sums a few hundred
 * rows at most, because readers and the node heartbeat fold them.
 */
import type { PgDatabase } from './pg-db.js';

/** Counters written by the schema's triggers. */
export type CounterName = 'media' | 'jobs' | 'node_done' | 'node_failed';
export const COUNTER_NAMES: readonly CounterName[] = ['media', 'jobs', 'node_done', 'node_failed'];

/** Fold when a read summed more delta rows than this. */
const FOLD_AFTER_ROWS = 256;

export interface CounterValue {
  n: number;
  bytes: number;
}

/** Sums per key of one counter. */
export async function readCounter(db: PgDatabase, name: CounterName): Promise<Map<string, CounterValue>> {
  const rows = await db.query<{ key: string; n: number; bytes: number; rows: number }>(
    `SELECT key, sum(n)::int8 AS n, sum(bytes)::int8 AS bytes, count(*)::int8 AS rows
       FROM mediacache.counters WHERE name = $1 GROUP BY key`,
    [name],
    'mc_read_counter',
  );
  const out = new Map<string, CounterValue>();
  let seen = 0;
  for (const r of rows) {
    out.set(r.key, { n: r.n, bytes: r.bytes });
    seen += r.rows;
  }
  if (seen > FOLD_AFTER_ROWS) await foldCounter(db, name);
  return out;
}

export async function foldCounter(db: PgDatabase, name: CounterName): Promise<void> {
  await db.query('SELECT mediacache.fold_counters($1)', [name]);
}

export async function foldAllCounters(db: PgDatabase): Promise<void> {
  for (const name of COUNTER_NAMES) await foldCounter(db, name);
}
