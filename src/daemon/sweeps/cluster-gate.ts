/**
 * One integrity sweep at a time for a whole cluster: the scheduled sweep of
 * a daemon in database mode runs only while it holds the cluster's `sweep`
 * lease (PgNodes), renewed while it runs. A daemon whose timer fires while
 * another one sweeps skips that slot; the files are shared, so one sweep
 * checks them all. A daemon that dies mid-sweep loses the lease at expiry.
 */
import { SWEEP_LOCK, type PgNodes } from '../../core/postgres/pg-nodes.js';
import type { SweepReport } from '../../core/protocol/rpc.js';
import type { Logger } from '../../core/util/logger.js';

export const SWEEP_LEASE_MS = 60_000;

export class ClusterSweepGate {
  constructor(
    private readonly sweeper: { run(): Promise<SweepReport> },
    private readonly nodes: Pick<PgNodes, 'tryLock' | 'unlock' | 'lockHolder'>,
    private readonly owner: string,
    private readonly logger: Logger,
    private readonly leaseMs = SWEEP_LEASE_MS,
  ) {}

  /** The sweep's report, or undefined when another daemon holds the lease. */
  async run(): Promise<SweepReport | undefined> {
    if (!(await this.nodes.tryLock(SWEEP_LOCK, this.owner, this.leaseMs))) {
      const holder = await this.nodes.lockHolder(SWEEP_LOCK).catch(() => undefined);
      this.logger.info('scheduled sweep skipped: another daemon of the cluster is sweeping', { holder: holder?.owner, until: holder?.expiresAt });
      return undefined;
    }
    const renew = setInterval(() => {
      this.nodes.tryLock(SWEEP_LOCK, this.owner, this.leaseMs).then(
        (held) => {
          if (!held) this.logger.warn('lost the cluster sweep lease (the database was away too long); another daemon may sweep at the same time');
        },
        (e: unknown) => this.logger.warn('cannot renew the cluster sweep lease', { error: String(e) }),
      );
    }, Math.max(1, Math.floor(this.leaseMs / 3)));
    renew.unref();
    try {
      return await this.sweeper.run();
    } finally {
      clearInterval(renew);
      await this.nodes.unlock(SWEEP_LOCK, this.owner).catch(() => false);
    }
  }
}
