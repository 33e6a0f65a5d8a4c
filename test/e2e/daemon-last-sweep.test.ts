/**
 * `status` shows the last sweep after a restart: the report is kept in
 * `<index>/last-sweep.json`, and a damaged file only means "none yet".
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon } from '../helpers/daemon.js';

t.test('status shows the last sweep after a restart', async (t) => {
  const first = await startDaemon(t);
  const none = await first.rpc('status', {});
  t.notOk(none.lastSweep, 'a new cache: no sweep yet');
  const swept = await first.rpc('sweep', { wait: true });
  t.ok(swept.report, 'the sweep ran');
  t.equal((await first.stop()).code, 0);

  const second = await startDaemon(t, { root: first.root });
  const st = await second.rpc('status', {});
  t.equal(st.lastSweep?.id, swept.report!.id, 'the same sweep, after the restart');
  t.equal(st.lastSweep?.finishedAt, swept.report!.finishedAt);
  t.equal((await second.stop()).code, 0);

  // A damaged file: the daemon starts, and status shows no sweep rather than garbage.
  fs.writeFileSync(path.join(first.cacheDir, 'index', 'last-sweep.json'), '{"id": 3');
  const third = await startDaemon(t, { root: first.root });
  t.notOk((await third.rpc('status', {})).lastSweep, 'damaged: none shown');
  t.match(third.stderr(), /last sweep report damaged/);
});
