/**
 * The cluster sweep gate against a real PostgreSQL: of two daemons whose
 * timers fire together only one sweeps; the lease is renewed while the sweep
 * runs, released at its end, and taken over once a dead holder's lease expires.
 */
import t from 'tap';
import { PgDatabase, PgNodes, SWEEP_LOCK } from '../../../src/core/postgres/index.js';
import type { SweepReport } from '../../../src/core/protocol/rpc.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { ClusterSweepGate } from '../../../src/daemon/sweeps/cluster-gate.js';
import { pgServer } from '../../helpers/postgres.js';
import { waitFor } from '../../helpers/wait.js';

const pg = await pgServer(t);

/** A sweep the test ends when it wants (what is under test is the lease, not the sweep). */
function heldSweep(id: string): { run(): Promise<SweepReport>; started: () => boolean; finish(): void } {
  let finish!: () => void;
  let started = false;
  const gate = new Promise<void>((r) => (finish = r));
  return {
    run: async () => {
      started = true;
      await gate;
      return { id } as SweepReport;
    },
    started: () => started,
    finish: () => finish(),
  };
}

t.test('one sweep at a time across the cluster; renewed while it runs; released after', async (t) => {
  const db = await PgDatabase.open({ database: await pg.freshDatabase() });
  t.teardown(() => db.close());
  const nodes = new PgNodes(db);
  const a = heldSweep('a');
  const b = heldSweep('b');
  const gateA = new ClusterSweepGate(a, nodes, 'node-a', silentLogger, 900);
  const gateB = new ClusterSweepGate(b, nodes, 'node-b', silentLogger, 900);
  const runA = gateA.run();
  await waitFor(() => a.started(), { what: 'sweep a running' });
  t.equal(await gateB.run(), undefined, 'b skips while a sweeps');
  t.notOk(b.started());
  // Past the first lease's end: a still holds it because it renews it.
  const first = await nodes.lockHolder(SWEEP_LOCK);
  const later = await waitFor(
    async () => {
      const h = await nodes.lockHolder(SWEEP_LOCK);
      return h && Date.parse(h.expiresAt) > Date.parse(first!.expiresAt) + 900 ? h : undefined;
    },
    { what: 'lease renewed beyond its first expiry' },
  );
  t.equal(later.owner, 'node-a', 'still held by a');
  t.equal(later.acquiredAt, first!.acquiredAt, 'the same lease, renewed');
  a.finish();
  t.same(await runA, { id: 'a' });
  t.equal(await nodes.lockHolder(SWEEP_LOCK), undefined, 'released at the end');
  const runB = gateB.run();
  await waitFor(() => b.started(), { what: 'b sweeps now' });
  b.finish();
  t.same(await runB, { id: 'b' });
});

t.test('a holder that died (no renewal) loses the lease at expiry', async (t) => {
  const db = await PgDatabase.open({ database: await pg.freshDatabase() });
  t.teardown(() => db.close());
  const nodes = new PgNodes(db);
  t.ok(await nodes.tryLock(SWEEP_LOCK, 'dead-node', 300), 'a daemon took the lease, then was killed');
  const b = heldSweep('b');
  const gateB = new ClusterSweepGate(b, nodes, 'node-b', silentLogger, 900);
  t.equal(await gateB.run(), undefined, 'skipped while the dead lease is unexpired');
  await waitFor(async () => (await nodes.lockHolder(SWEEP_LOCK)) === undefined, { what: 'lease expiry' });
  const run = gateB.run();
  await waitFor(() => b.started(), { what: 'taken over' });
  b.finish();
  t.same(await run, { id: 'b' });
});
