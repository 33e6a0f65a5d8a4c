import t from 'tap';
import { IdleAwareSweepRate } from '../../../src/daemon/sweeps/rate.js';
import { waitFor } from '../../helpers/wait.js';

t.test('the sweep is throttled only while downloads run', async (t) => {
  const running: string[] = [];
  const applied: number[] = [];
  const rate = new IdleAwareSweepRate(50);
  t.teardown(() => rate.stop());
  rate.attach({ active: () => running }, { setOptions: (o) => void (o.rateMBps !== undefined && applied.push(o.rateMBps)) }, 20);
  t.same(applied, [0], 'idle at start: unlimited');

  running.push('job-1');
  rate.poke();
  await waitFor(() => applied.at(-1) === 50, { what: 'throttle while a download runs' });

  running.pop();
  // No event this time: the periodic check notices.
  await waitFor(() => applied.at(-1) === 0, { what: 'unlimited again when idle' });
  t.same(applied, [0, 50, 0], 'each change applied once');

  running.push('job-2');
  rate.configure(10);
  t.equal(applied.at(-1), 10, 'a reloaded rate applies at once while busy');
  t.equal(rate.current(), 10);
});
