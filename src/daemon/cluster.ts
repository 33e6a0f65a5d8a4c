/**
 * This daemon as a member of a cluster (database mode): registered in
 * mediacache.nodes under its stable id, alive while it heartbeats, and the
 * source of the cluster view `status`/`stats` show. The heartbeat survives
 * a database outage: failures are logged once and it keeps trying.
 */
import os from 'node:os';
import type { PgDatabase } from '../core/postgres/pg-db.js';
import { PgNodes } from '../core/postgres/pg-nodes.js';
import { PgQueue } from '../core/postgres/pg-queue.js';
import type { ClusterView } from '../core/protocol/rpc.js';
import type { Logger } from '../core/util/logger.js';

export const HEARTBEAT_MS = 5_000;
/** A daemon not heard from for this long is shown as not alive (its leases expire on their own). */
export const ALIVE_MS = 30_000;

export class ClusterMember {
  readonly nodes: PgNodes;
  readonly queue: PgQueue;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;
  /** Set by the first join: leases left by this node id's previous run are given back once, then. */
  private started = false;

  constructor(
    readonly db: PgDatabase,
    readonly nodeId: string,
    private readonly logger: Logger,
  ) {
    this.nodes = new PgNodes(db);
    this.queue = new PgQueue(db);
  }

  async join(info: { version: string; socket: string; concurrency: number; perHost: number }): Promise<void> {
    const { version, ...rest } = info;
    await this.nodes.register({ id: this.nodeId, hostName: os.hostname(), pid: process.pid, version, info: rest });
    if (!this.started) {
      // Jobs still leased to this node id are left from its previous run (killed or cut off): nothing
      // runs them now (the state dir holding the id is locked by this process), so they are queued
      // again at once instead of after their lease runs out.
      this.started = true;
      const back = await this.queue.release(this.nodeId);
      if (back > 0) this.logger.warn('jobs this daemon was running when it stopped are queued again', { jobs: back, nodeId: this.nodeId });
    }
    this.timer = setInterval(() => void this.beat(info), HEARTBEAT_MS);
    this.timer.unref();
    this.logger.info('joined the cluster', { nodeId: this.nodeId, database: this.db.target });
  }

  private async beat(info: { version: string; socket: string; concurrency: number; perHost: number }): Promise<void> {
    try {
      // False: an operator removed our row; join again.
      if (!(await this.nodes.heartbeat(this.nodeId))) {
        clearInterval(this.timer);
        await this.join(info);
      }
      if (this.failing) this.logger.info('database reachable again', { database: this.db.target });
      this.failing = false;
    } catch (e) {
      if (!this.failing) this.logger.warn('cluster heartbeat failed; retrying', { database: this.db.target, error: String(e) });
      this.failing = true;
    }
  }

  async view(): Promise<ClusterView> {
    const [queue, shares, nodes] = await Promise.all([this.queue.counts(), this.queue.shares(), this.nodes.list(ALIVE_MS)]);
    return {
      database: this.db.target,
      nodeId: this.nodeId,
      queue,
      nodes: nodes.map((n) => {
        const s = shares.get(n.id) ?? { running: 0, done: 0, failed: 0 };
        return { id: n.id, hostName: n.hostName, pid: n.pid, alive: n.alive, heartbeatAt: n.heartbeatAt, ...s };
      }),
    };
  }

  async leave(): Promise<void> {
    clearInterval(this.timer);
    await this.nodes.stop(this.nodeId);
  }
}
