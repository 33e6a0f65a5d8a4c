/**
 * The connection pool every PostgreSQL store of one process shares, with the
 * project's error mapping applied at this one door: every query and every
 * transaction either succeeds or throws MediaCacheError('E_UNAVAILABLE').
 *
 * The pool survives a server restart: a connection that dies is dropped
 * (node-postgres emits 'error' on idle clients, handled here so the process
 * does not crash) and the next query opens a fresh one, so callers only see
 * E_UNAVAILABLE (retryable) while the server is away.
 */
// Type-only: the driver is loaded by open(), so an embedded cache (no --database) never pays for it.
import type pg from 'pg';
import { silentLogger, type Logger } from '../util/logger.js';
import { isTransient, pgError } from './pg-errors.js';
import { migrate, type MigrationResult } from './migrations.js';

export interface PgDatabaseOptions {
  /** `postgres://…` connection string, or a node-postgres pool config. */
  database: string | pg.PoolConfig;
  /** Connections kept at most (default 10). */
  poolSize?: number;
  /** How long a query waits for a connection before E_UNAVAILABLE (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Apply migrations at open (default true). */
  migrate?: boolean;
  logger?: Logger;
  /** Shown in pg_stat_activity (default "mediacache"). */
  applicationName?: string;
}

/** A client inside a transaction. */
export type PgTx = Pick<pg.PoolClient, 'query'>;

const INT8_OID = 20;

/**
 * int8 (counts, sizes, job ids) as JS numbers, for this pool only (never the
 * process-wide pg.types, which a library user's own pg code may rely on).
 * Exact below 2^53: sizes and ids stay far below that.
 */
function typesOf(driver: typeof pg): pg.CustomTypesConfig {
  return {
    getTypeParser: ((oid: number, format?: string) =>
      oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : driver.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
  };
}

/** "db on host:port" without user or password, for messages. */
export function describeTarget(database: string | pg.PoolConfig): string {
  if (typeof database !== 'string') {
    return `${database.database ?? 'default database'} on ${database.host ?? 'localhost'}:${database.port ?? 5432}`;
  }
  try {
    // "postgresql://user@/db?host=/run/postgresql" (Unix socket) has an empty host, which URL rejects after userinfo.
    const u = new URL(database.replace(/^([a-z]+:\/\/[^/?#]*@)(?=[/?#])/i, '$1localhost'));
    const host = u.searchParams.get('host') ?? (u.hostname || 'localhost');
    const port = u.searchParams.get('port') ?? (u.port || '5432');
    const db = decodeURIComponent(u.pathname.replace(/^\//, '')) || 'default database';
    return `${db} on ${host}:${port}`;
  } catch {
    return 'the configured database';
  }
}

export class PgDatabase {
  readonly pool: pg.Pool;
  readonly target: string;
  readonly logger: Logger;
  /** Set by open() when migrations ran. */
  migration?: MigrationResult;
  private closed = false;

  private constructor(opts: PgDatabaseOptions, driver: typeof pg) {
    this.logger = opts.logger ?? silentLogger;
    this.target = describeTarget(opts.database);
    const base: pg.PoolConfig = typeof opts.database === 'string' ? { connectionString: opts.database } : { ...opts.database };
    this.pool = new driver.Pool({
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: opts.applicationName ?? 'mediacache',
      types: typesOf(driver),
      ...base,
    });
    // An idle connection killed by a server restart: drop it (the pool does), never crash.
    this.pool.on('error', (e) => this.logger.warn('database connection lost', { target: this.target, error: e.message }));
  }

  /** Connect, check the server answers, and (unless opts.migrate === false) bring the schema up to date. */
  static async open(opts: PgDatabaseOptions): Promise<PgDatabase> {
    const db = new PgDatabase(opts, (await import('pg')).default);
    try {
      if (opts.migrate !== false) db.migration = await migrate(db);
      else await db.query('SELECT 1');
    } catch (e) {
      await db.pool.end().catch(() => {});
      throw pgError(e, db.target);
    }
    return db;
  }

  /**
   * One statement on any pooled connection. `name` makes it a prepared
   * statement (parsed and planned once per connection): for the hot lookups.
   */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[], name?: string): Promise<R[]> {
    try {
      const q: pg.QueryConfig = name === undefined ? { text, values } : { name, text, values };
      return (await this.pool.query<R>(q)).rows;
    } catch (e) {
      throw pgError(e, this.target);
    }
  }

  /**
   * Run `fn` in one transaction (READ COMMITTED). A deadlock or serialization
   * failure runs it again (up to 5 times), so `fn` must only touch the
   * database, never state outside it it cannot redo.
   */
  async tx<T>(fn: (c: PgTx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw pgError(e, this.target);
      }
      let broken: unknown;
      // The server can end a checked-out connection between two statements (a
      // restart); node-postgres then emits 'error' on it, which must not go unhandled.
      const onError = (e: Error): void => {
        broken = e;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch (re) {
          broken = re; // the connection is gone; do not return it to the pool
        }
        if (isTransient(e) && attempt < 5) continue;
        throw pgError(e, this.target);
      } finally {
        client.off('error', onError);
        client.release(broken instanceof Error ? broken : undefined);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}
