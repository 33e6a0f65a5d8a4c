/**
 * A private PostgreSQL server per test file (see pg-cluster.js), with a fresh
 * database per test:
 *
 *   const pg = await pgServer(t);                 // stopped and removed at t's teardown
 *   const url = await pg.freshDatabase();        // postgresql://postgres@/db_3?host=/tmp/mc-pg-…&port=5432
 *   await pg.stop(); await pg.start();            // the "database restarted" cases
 */
import pg from 'pg';
import { startCluster, type PgCluster } from './pg-cluster.js';

export type { PgCluster } from './pg-cluster.js';

export interface PgServer extends PgCluster {
  /** CREATE DATABASE with a new name; returns its connection string. */
  freshDatabase(): Promise<string>;
  /** Run one statement as the superuser on a database (default: postgres). */
  sql<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[], database?: string): Promise<R[]>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

let dbSeq = 0;

export async function pgServer(t: Teardown, opts: { durable?: boolean } = {}): Promise<PgServer> {
  const cluster = await startCluster(opts);
  t.teardown(() => cluster.close());
  const sql = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = [], database = 'postgres'): Promise<R[]> => {
    const c = new pg.Client(cluster.config(database));
    await c.connect();
    try {
      return (await c.query<R>(text, values)).rows;
    } finally {
      await c.end();
    }
  };
  return Object.assign(Object.create(cluster) as PgCluster, {
    sql,
    async freshDatabase(): Promise<string> {
      const name = `db_${process.pid}_${++dbSeq}`;
      await sql(`CREATE DATABASE ${name}`);
      return cluster.connectionString(name);
    },
  }) as PgServer;
}
