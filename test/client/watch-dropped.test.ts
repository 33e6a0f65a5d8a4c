/**
 * `mcctl watch` tells the user when the daemon dropped events because the
 * watch fell behind (the daemon's `events.dropped` notice).
 */
import t from 'tap';
import { main, type CliIO } from '../../src/client/cli.js';
import { EVENTS_DROPPED_METHOD } from '../../src/core/protocol/rpc.js';
import { appFault, startFakeServer } from './ndjson-server.js';
import { waitFor } from '../helpers/wait.js';

class Capture {
  out = '';
  write(s: string): boolean {
    this.out += s;
    return true;
  }
}

for (const json of [false, true]) {
  t.test(`watch${json ? ' --json' : ''} reports dropped events`, async (t) => {
    const s = await startFakeServer({ subscribe: () => ({ events: [] }) });
    t.teardown(() => s.close());
    const ac = new AbortController();
    const io = { stdout: new Capture(), stderr: new Capture(), env: {}, signal: ac.signal } as unknown as CliIO & { stdout: Capture; stderr: Capture };
    const p = main(['watch', ...(json ? ['--json'] : []), '--socket', s.socket], io);
    await waitFor(() => s.requests.some((r) => r.method === 'subscribe'), { what: 'subscribed' });
    for (const c of s.conns) c.raw(JSON.stringify({ jsonrpc: '2.0', method: EVENTS_DROPPED_METHOD, params: { dropped: 17 } }) + '\n');
    if (json) {
      await waitFor(() => io.stdout.out.length > 0, { what: 'a JSON line' });
      t.same(JSON.parse(io.stdout.out), { type: 'events.dropped', dropped: 17 });
    } else {
      await waitFor(() => /17 event\(s\) were not delivered/.test(io.stderr.out), { what: 'the notice on stderr' });
      t.equal(io.stdout.out, '', 'stdout keeps only events');
    }
    ac.abort();
    t.equal(await p, 0);
  });
}

t.test('watch after a restart: a daemon still starting (E_UNAVAILABLE) is asked again, not watched silently', async (t) => {
  let n = 0;
  const s = await startFakeServer({
    subscribe: () => {
      n++;
      // The 2nd subscribe meets a daemon that answers before it is ready, as a restarted one can.
      if (n === 2) throw appFault('E_UNAVAILABLE', 'the daemon is still starting; try again in a moment');
      return { events: [] };
    },
  });
  t.teardown(() => s.close());
  const ac = new AbortController();
  const io = { stdout: new Capture(), stderr: new Capture(), env: {}, signal: ac.signal } as unknown as CliIO & { stdout: Capture; stderr: Capture };
  const p = main(['watch', '--socket', s.socket], io);
  await waitFor(() => /watching/.test(io.stderr.out), { what: 'watching' });
  for (const c of s.conns) c.sock.destroy(); // the daemon went away
  await waitFor(() => /reconnected to/.test(io.stderr.out), { timeoutMs: 15_000, what: 'the reconnected notice' });
  t.equal(n, 3, 'subscribed again after the "still starting" answer');
  await waitFor(() => s.conns.size === 1, { what: 'the refused connection closed' });
  for (const c of s.conns) c.notify({ type: 'job.queued', job: { id: '7', url: 'http://127.0.0.1/x.png', state: 'queued', priority: 0, attempts: 0, createdAt: '', updatedAt: '', source: 'rpc' } });
  await waitFor(() => /x\.png/.test(io.stdout.out), { what: 'an event on the new connection' });
  t.equal(io.stderr.out.match(/lost the daemon/g)?.length, 1, 'one "lost" notice for one restart');
  ac.abort();
  t.equal(await p, 0);
});
