/**
 * `mcctl watch` tells the user when the daemon dropped events because the
 * watch fell behind (the daemon's `events.dropped` notice).
 */
import t from 'tap';
import { main, type CliIO } from '../../src/client/cli.js';
import { EVENTS_DROPPED_METHOD } from '../../src/core/protocol/rpc.js';
import { startFakeServer } from './ndjson-server.js';
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
