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
  const d = await startDaemon(t, { args: ['--max-connections', '4', '--idle-timeout', '3s'] });
  const conns: Raw[] = [];
  t.teardown(() => conns.forEach((c) => c.sock.destroy()));
  // Six at once (the helper's own client may hold a slot): the ones past the limit get an
  // error line and are closed; the served ones stay silent.
  for (let i = 0; i < 6; i++) conns.push(await open(d.socket));
  const refused = await waitFor(() => conns.find((c) => c.text), { what: 'a refusal' });
  t.ok(refused, 'a connection past the limit was refused');
  t.match(refused!.text, /too many connections \(limit 4\)/);
  t.match(refused!.text, /E_UNAVAILABLE/);
  await waitFor(() => refused!.closed, { what: 'the refused connection closed' });
  // The idle ones are closed after the timeout; then a new client is served.
  await waitFor(() => conns.every((c) => c.closed), { timeoutMs: 15_000, what: 'idle connections closed' });
  const c = await d.connect();
  t.equal((await c.call('status', {})).pid, d.pid, 'served again');
  t.match(d.stderr(), /connection limit reached/);
});
