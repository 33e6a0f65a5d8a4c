/**
 * End to end, the real daemon: --max-connections refuses clients past the
 * limit with an error line, and --idle-timeout closes idle connections, so
 * a crowd of idle clients cannot lock everyone else out.
 */
import t from 'tap';
import net from 'node:net';
import { startDaemon } from '../helpers/daemon.js';
import { waitFor } from '../helpers/wait.js';

interface Raw {
  sock: net.Socket;
  text: string;
  closed: boolean;
}

function open(path: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const r: Raw = { sock: net.createConnection(path), text: '', closed: false };
    r.sock.setEncoding('utf8');
    r.sock.on('data', (d: string) => (r.text += d));
    r.sock.on('close', () => (r.closed = true));
    r.sock.once('error', reject);
    r.sock.once('connect', () => resolve(r));
  });
}

t.test('connection limit and idle timeout', async (t) => {
  const d = await startDaemon(t, { args: ['--max-connections', '4', '--idle-timeout', '1500ms'] });
  const conns: Raw[] = [];
  t.teardown(() => conns.forEach((c) => c.sock.destroy()));
  // Open until one is refused (the helper's own client may hold a slot).
  let refused: Raw | undefined;
  for (let i = 0; i < 6 && !refused; i++) {
    const c = await open(d.socket);
    conns.push(c);
    // A served connection stays silent; a refused one gets its error line and is closed at once.
    if (await waitFor(() => c.closed && c.text, { timeoutMs: 500 }).catch(() => undefined)) refused = c;
  }
  t.ok(refused, 'a connection past the limit was refused');
  t.match(refused!.text, /too many connections \(limit 4\)/);
  t.match(refused!.text, /E_UNAVAILABLE/);
  // The idle ones are closed after the timeout; then a new client is served.
  await waitFor(() => conns.every((c) => c.closed), { timeoutMs: 15_000, what: 'idle connections closed' });
  const c = await d.connect();
  t.equal((await c.call('status', {})).pid, d.pid, 'served again');
  t.match(d.stderr(), /connection limit reached/);
});
