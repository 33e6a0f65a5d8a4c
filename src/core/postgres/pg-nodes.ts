/**
 * The daemons of a cluster and the cluster-wide locks they share.
 *
 * A node is alive while its heartbeat is younger than `aliveMs` by the
 * database's clock. Locks are lease rows, not session advisory locks: a
 * session lock dies with its connection, so a pool reconnect would silently
 * drop it, and a daemon cut off from the network would keep it for as long as
 * its half-open connection lingers; a lease row just expires.
 */
import type { PgDatabase } from './pg-db.js';
import { foldAllCounters } from './pg-counters.js';

export interface NodeInfo {
  /** Stable per daemon (chosen by the daemon; a restart may reuse it to rejoin). */
  id: string;
  hostName: string;
  pid: number;
  version?: string;
  /** Anything the daemon wants others to see (socket, concurrency, per-host). */
  info?: Record<string, unknown>;
}

export interface NodeStatus extends NodeInfo {
  startedAt: string;
  heartbeatAt: string;
  stoppedAt?: string;
  alive: boolean;
}

export interface LockHolder {
  owner: string;
  acquiredAt: string;
  expiresAt: string;
}

/** The integrity sweep's lock name. */
export const SWEEP_LOCK = 'sweep';

interface NodeRow {
  id: string;
  host_name: string;
  pid: number;
  version: string | null;
  info: Record<string, unknown>;
  started_at: Date;
  heartbeat_at: Date;
  stopped_at: Date | null;
  alive: boolean;
}

export class PgNodes {
  constructor(private readonly db: PgDatabase) {}

  /** Join (or rejoin) the cluster: started now, alive now. */
  async register(n: NodeInfo): Promise<void> {
    await this.db.query(
      `INSERT INTO mediacache.nodes (id, host_name, pid, version, info) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET host_name = excluded.host_name, pid = excluded.pid, version = excluded.version,
         info = excluded.info, started_at = now(), heartbeat_at = now(), stopped_at = NULL`,
      [n.id, n.hostName, n.pid, n.version ?? null, JSON.stringify(n.info ?? {})],
    );
  }

  /**
   * I am alive. Also folds the cluster's counters, so they stay short for
   * readers whatever the write rate. False when the node row is gone
   * (removed by an operator): the caller should register again.
   */
  async heartbeat(id: string): Promise<boolean> {
    const rows = await this.db.query(
      'UPDATE mediacache.nodes SET heartbeat_at = now(), stopped_at = NULL WHERE id = $1 RETURNING id',
      [id],
    );
    await foldAllCounters(this.db);
    return rows.length > 0;
  }

  /** Leaving cleanly: no longer listed as alive. */
  async stop(id: string): Promise<void> {
    await this.db.query('UPDATE mediacache.nodes SET stopped_at = now() WHERE id = $1', [id]);
  }

  /** Every known node, alive first, with `alive` judged on the database's clock. */
  async list(aliveMs: number): Promise<NodeStatus[]> {
    const rows = await this.db.query<NodeRow>(
      `SELECT *, (stopped_at IS NULL AND heartbeat_at > now() - $1 * interval '1 millisecond') AS alive
         FROM mediacache.nodes ORDER BY alive DESC, id`,
      [aliveMs],
    );
    return rows.map((r) => {
      const s: NodeStatus = {
        id: r.id,
        hostName: r.host_name,
        pid: r.pid,
        info: r.info,
        startedAt: r.started_at.toISOString(),
        heartbeatAt: r.heartbeat_at.toISOString(),
        alive: r.alive,
      };
      if (r.version !== null) s.version = r.version;
      if (r.stopped_at !== null) s.stoppedAt = r.stopped_at.toISOString();
      return s;
    });
  }

  /** Forget nodes not heard from for `olderThanMs`; how many. */
  async forget(olderThanMs: number): Promise<number> {
    const rows = await this.db.query(
      "DELETE FROM mediacache.nodes WHERE heartbeat_at < now() - $1 * interval '1 millisecond' RETURNING id",
      [olderThanMs],
    );
    return rows.length;
  }

  /**
   * Take or renew the lease `name` for `owner` for `ttlMs`. True when `owner`
   * holds it now; false while someone else's lease is unexpired. Renew well
   * within ttlMs; a holder that stops renewing loses it at expiry.
   */
  async tryLock(name: string, owner: string, ttlMs: number): Promise<boolean> {
    const rows = await this.db.query(
      `INSERT INTO mediacache.cluster_locks (name, owner, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
         acquired_at = CASE WHEN mediacache.cluster_locks.owner = excluded.owner
                            THEN mediacache.cluster_locks.acquired_at ELSE now() END
       WHERE mediacache.cluster_locks.owner = excluded.owner OR mediacache.cluster_locks.expires_at < now()
       RETURNING owner`,
      [name, owner, ttlMs],
    );
    return rows.length > 0;
  }

  /** Give the lease up (only if `owner` holds it); whether it did. */
  async unlock(name: string, owner: string): Promise<boolean> {
    const rows = await this.db.query('DELETE FROM mediacache.cluster_locks WHERE name = $1 AND owner = $2 RETURNING name', [name, owner]);
    return rows.length > 0;
  }

  /** Who holds `name` now (undefined when free or expired). */
  async lockHolder(name: string): Promise<LockHolder | undefined> {
    const rows = await this.db.query<{ owner: string; acquired_at: Date; expires_at: Date }>(
      'SELECT owner, acquired_at, expires_at FROM mediacache.cluster_locks WHERE name = $1 AND expires_at >= now()',
      [name],
    );
    const r = rows[0];
    return r && { owner: r.owner, acquiredAt: r.acquired_at.toISOString(), expiresAt: r.expires_at.toISOString() };
  }
}
