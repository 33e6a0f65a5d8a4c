/**
 * Slow origins must not take every slot: four slowloris URLs on two loopback
 * ports (one hostname, so one per-host limit) do not delay a normal URL on
 * the same hostname beyond a few seconds, with the daemon's default limits.
 */
import t from 'tap';
import net from 'node:net';
import { fixture, startOrigin } from '../helpers/origin.js';
import { startDaemon } from '../helpers/daemon.js';
import { waitFor } from '../helpers/wait.js';

type Tt = Parameters<Parameters<typeof t.test>[0]>[0];

/** Answers headers promising 1 MB, then one byte every second: just inside any stall timeout. */
async function slowloris(t: Tt): Promise<{ url: (p: string) => string; open: () => number }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => undefined);
    s.on('close', () => socks.delete(s));
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n\x89');
      const timer = setInterval(() => s.write('P'), 1000);
      s.on('close', () => clearInterval(timer));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(async () => {
    for (const s of socks) s.destroy();
    await new Promise<void>((r) => srv.close(() => r()));
  });
  const port = (srv.address() as net.AddressInfo).port;
  return { url: (p) => `http://127.0.0.1:${port}${p}`, open: () => socks.size };
}

t.test('four slowloris URLs on two ports do not hold back a normal URL', async (t) => {
  const a = await slowloris(t);
  const b = await slowloris(t);
  const origin = await startOrigin();
  t.teardown(() => origin.close());
  origin.route('/normal.png', { body: fixture('sample.png') });
  // Defaults: concurrency 5, per-host 4, timeout 30 s.
  const d = await startDaemon(t);
  const slow = [a.url('/1.png'), a.url('/2.png'), b.url('/3.png'), b.url('/4.png')];
  await d.rpc('add', { urls: slow });
  await waitFor(() => a.open() + b.open() === 4, { timeoutMs: 15_000, what: 'four slowloris connections' });
  // All four are on 127.0.0.1: per-host is keyed by hostname, so that host is at its limit of 4.
  const t0 = Date.now();
  const r = await d.rpc('add', { urls: [origin.url('/normal.png')], wait: true });
  const took = Date.now() - t0;
  t.equal(r.items[0].state, 'done', 'the normal URL is downloaded');
  t.ok(took < 8000, `normal URL done in ${took} ms despite four stalled transfers on its host`);
  const st = await d.rpc('status', {});
  t.equal(st.active.length, 4, 'the slowloris transfers keep running');
  // Each transfer's rate is measured over its own window, so the last one may be marked a moment later.
  await waitFor(async () => { const a4 = (await d.rpc('status', {})).active; return a4.length === 4 && a4.every((x) => x.stalled === true); }, { timeoutMs: 15_000, what: 'all four shown as stalled' });
  t.pass('and are shown as stalled');
  t.equal(a.open() + b.open(), 4, 'no extra connections to the slow origins');
});
