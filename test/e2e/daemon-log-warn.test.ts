/**
 * Operators who run at `--log-level warn` still see failed downloads.
 */
import t from 'tap';
import { startOrigin } from '../helpers/origin.js';
import { startDaemon } from '../helpers/daemon.js';
import { waitFor } from '../helpers/wait.js';

t.test('a failed download is logged at warn', async (t) => {
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/gone.png', { status: 404, body: 'no' });
  const d = await startDaemon(t, { args: ['--log-level', 'warn'] });
  const res = await d.rpc('add', { urls: [origin.url('/gone.png')], wait: true });
  t.equal(res.items[0].state, 'failed');
  const line = await waitFor(() => d.stderr().split('\n').find((l) => /download failed/.test(l)), { timeoutMs: 10_000, what: 'the failure in the log' });
  t.match(line, /warn/i, 'at warn level');
  t.match(line, /gone\.png/, 'names the URL');
  t.match(line, /E_HTTP/, 'and the code');
  t.notMatch(d.stderr(), /\binfo\b.*cached/, 'info lines are not shown');
});
