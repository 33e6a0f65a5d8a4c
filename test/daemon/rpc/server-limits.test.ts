/**
 * The RPC server's resource bounds over real Unix sockets: a connection
 * limit with a clear refusal, idle and not-reading connections closed,
 * subscribers that never read losing events (with a notice once they catch
 * up) instead of growing the daemon's buffers, and a global bound on
 * buffered output.
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RpcServer, type RpcConnection, type RpcHandler, type RpcServerOptions } from '../../../src/daemon/rpc/server.js';
import { effectiveMaxConnections, openFileLimit } from '../../../src/daemon/rpc/limits.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { EVENTS_DROPPED_METHOD, type EventName, type RpcEvent } from '../../../src/core/protocol/rpc.js';
import { makeRoot, RpcClient } from '../../helpers/daemon.js';
import { waitFor } from '../../helpers/wait.js';

let release: (() => void) | undefined;
const handlers: Record<string, RpcHandler> = {
  echo: async (p) => p,
  slow: async (p) => {
    await new Promise<void>((r) => (release = r));
    return p;
  },
  subscribe: async (p, conn: RpcConnection) => {
    conn.subscribe((p as { events: EventName[] }).events);
    return { events: [...conn.subscriptions] };
  },
};

async function start(t: Test, opts: Partial<RpcServerOptions> = {}): Promise<{ srv: RpcServer; sock: string }> {
  const root = makeRoot();
  const sock = path.join(root, 'd.sock');
  const srv = new RpcServer({ socketPath: sock, handlers, logger: silentLogger, ...opts });
  await srv.listen();
  t.teardown(async () => {
    await srv.close();
    fs.rmSync(root, { recursive: true, force: true });
  });
  return { srv, sock };
}

/** A raw connection that reads nothing unless told to. */
async function raw(t: Test, sock: string): Promise<net.Socket & { closedP: Promise<void>; text: () => string }> {
  const s = net.createConnection(sock) as net.Socket & { closedP: Promise<void>; text: () => string };
  t.teardown(() => s.destroy());
  await new Promise((r) => s.once('connect', r));
  s.on('error', () => undefined);
  s.closedP = new Promise((r) => s.once('close', () => r()));
  return s;
}

function collect(s: net.Socket): () => string {
  let got = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => (got += d));
  return () => got;
}

const doneEvent = (i: number, pad: number): RpcEvent =>
  ({ type: 'job.done', job: { id: `j${i}`, url: 'http://x/', state: 'done', priority: 0, attempts: 1, createdAt: '', updatedAt: '', source: 'rpc' }, record: { pad: 'x'.repeat(pad) } }) as unknown as RpcEvent;

t.test('connections past the limit get one error line and are closed; served again once one leaves', async (t) => {
  const { srv, sock } = await start(t, { maxConnections: 5, idleTimeoutMs: 0 });
  const idle = [];
  for (let i = 0; i < 5; i++) idle.push(await raw(t, sock));
  await waitFor(() => srv.connectionCount === 5, { what: '5 connections served' });
  const extra = await raw(t, sock);
  const text = collect(extra);
  await extra.closedP;
  const reply = JSON.parse(text().trim()) as { id: null; error: { message: string; data: { code: string } } };
  t.equal(reply.id, null);
  t.equal(reply.error.data.code, 'E_UNAVAILABLE');
  t.match(reply.error.message, /too many connections \(limit 5\)/);
  t.equal(srv.connectionCount, 5, 'the refused one was never counted');
  idle[0]!.destroy();
  await waitFor(() => srv.connectionCount === 4, { what: 'a slot freed' });
  const c = await RpcClient.connect(sock);
  t.teardown(() => c.destroy());
  t.same(await c.call('echo', { ok: 1 }), { ok: 1 }, 'a new client is served');
});

t.test('idle connections are closed; busy ones and reading subscribers are not', async (t) => {
  const { srv, sock } = await start(t, { idleTimeoutMs: 300 });
  const idle = await raw(t, sock);
  const waiting = await RpcClient.connect(sock);
  t.teardown(() => waiting.destroy());
  const sub = await RpcClient.connect(sock);
  t.teardown(() => sub.destroy());
  await sub.call('subscribe', { events: ['job.done'] });
  const p = waiting.call('slow', { x: 1 });
  await waitFor(() => release !== undefined, { what: 'slow request running' });
  const t0 = Date.now();
  await idle.closedP;
  t.ok(Date.now() - t0 >= 200, 'closed only after the idle timeout');
  // Well past the timeout: the request in flight and the subscriber keep their connections.
  await waitFor(() => Date.now() - t0 > 1200, { what: 'four timeouts' });
  t.ok(waiting.isOpen, 'a connection waiting for a reply is kept');
  t.ok(sub.isOpen, 'a subscriber is kept');
  srv.broadcast(doneEvent(1, 10));
  t.equal((await sub.nextEvent()).type, 'job.done', 'and still gets its events');
  release!();
  release = undefined;
  t.same(await p, { x: 1 });
});

t.test('a subscriber that stopped reading is closed after the timeout', async (t) => {
  const { srv, sock } = await start(t, { idleTimeoutMs: 400, subscriberBacklogBytes: 64 * 1024 });
  const s = await raw(t, sock);
  s.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'subscribe', params: { events: ['job.done'] } }) + '\n');
  await waitFor(() => srv.connectionCount === 1 && (srv as unknown as { conns: Set<{ subscriptions: Set<string> }> }).conns.values().next().value?.subscriptions.size === 1, { what: 'subscribed' });
  s.pause();
  // Fill the socket buffers (kernel and ours) so output is waiting.
  for (let i = 0; i < 200; i++) srv.broadcast(doneEvent(i, 8 * 1024));
  t.ok(srv.bufferedBytes() > 0, 'output is waiting for the reader');
  const t0 = Date.now();
  // (The paused client itself learns of the close only when it reads again.)
  await waitFor(() => srv.connectionCount === 0, { what: 'the stalled subscriber closed' });
  t.ok(Date.now() - t0 >= 250, 'after the timeout, not at once');
  t.equal(srv.bufferedBytes(), 0, 'its buffer is released');
});

t.test('20 subscribers that never read: buffers stay bounded; a reader that catches up is told what it missed', async (t) => {
  const maxBufferedBytes = 2 * 1024 * 1024;
  const { srv, sock } = await start(t, { idleTimeoutMs: 0, maxBufferedBytes, subscriberBacklogBytes: 512 * 1024 });
  const subs = [];
  for (let i = 0; i < 20; i++) {
    const s = await raw(t, sock);
    s.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'subscribe', params: { events: ['job.done'] } }) + '\n');
    subs.push(s);
  }
  await waitFor(() => [...(srv as unknown as { conns: Set<{ subscriptions: Set<string> }> }).conns].filter((c) => c.subscriptions.size === 1).length === 20, { what: '20 subscribed' });
  for (const s of subs) s.pause();
  const pad = 16 * 1024;
  let peak = 0;
  for (let i = 0; i < 2000; i++) {
    srv.broadcast(doneEvent(i, pad));
    if (i % 50 === 0) {
      peak = Math.max(peak, srv.bufferedBytes());
      await new Promise((r) => setImmediate(r)); // let the sockets flush what the kernel takes
    }
  }
  peak = Math.max(peak, srv.bufferedBytes());
  // 2000 events x 16 KiB x 20 subscribers would be 640 MiB.
  t.ok(peak <= maxBufferedBytes + 20 * (pad + 1024) + 20 * 64 * 1024, `buffered output peaked at ${(peak / 2 ** 20).toFixed(1)} MiB (bound ${maxBufferedBytes / 2 ** 20} MiB + one event and a socket buffer per subscriber)`);
  t.equal(srv.connectionCount, 20, 'slow subscribers are not cut off, they lose events');
  // One starts reading: it gets what was buffered, then the notice, then new events again.
  const reader = subs[0]!;
  let buf = '';
  const msgs: Array<{ method?: string; params?: { dropped?: number; type?: string } }> = [];
  reader.setEncoding('utf8');
  reader.on('data', (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      msgs.push(JSON.parse(buf.slice(0, nl)) as (typeof msgs)[number]);
      buf = buf.slice(nl + 1);
    }
  });
  reader.resume();
  const notice = await waitFor(() => msgs.find((m) => m.method === EVENTS_DROPPED_METHOD), { what: 'events.dropped notice' });
  const delivered = msgs.filter((m) => m.method === 'event').length;
  t.ok(notice.params!.dropped! > 0, `told it missed ${notice.params!.dropped} events`);
  t.equal(delivered + notice.params!.dropped!, 2000, 'delivered + dropped = every event broadcast');
  srv.broadcast(doneEvent(9999, 10));
  await waitFor(() => msgs.filter((m) => m.method === 'event').length === delivered + 1, { what: 'events flow again' });
  t.pass('events are delivered again after the notice');
});

t.test('the connection limit stays under a quarter of the open-file limit', async (t) => {
  t.same(effectiveMaxConnections(128, undefined), { limit: 128, capped: false });
  t.same(effectiveMaxConnections(128, 300), { limit: 75, capped: true }, '300 descriptors: 75 connections at most');
  t.same(effectiveMaxConnections(128, 65536), { limit: 128, capped: false });
  t.equal(openFileLimit(() => 'Limit  Soft Limit  Hard Limit  Units\nMax open files            300                  4096                 files\n'), 300);
  t.equal(openFileLimit(() => 'Max open files            unlimited            unlimited            files\n'), undefined);
  t.equal(openFileLimit(() => {
    throw new Error('no /proc');
  }), undefined);
  if (process.platform === 'linux') t.ok((openFileLimit() ?? 0) > 0, 'read from /proc/self/limits');
});

t.test('events broadcast close together leave in a few socket writes, in order, none lost', async (t) => {
  const { srv, sock } = await start(t);
  const s = await raw(t, sock);
  const text = collect(s);
  s.write(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'subscribe', params: { events: ['job.done'] } }) + '\n');
  const conns = (): Array<{ subscriptions: Set<string>; sock: net.Socket }> => [...(srv as unknown as { conns: Set<{ subscriptions: Set<string>; sock: net.Socket }> }).conns];
  await waitFor(() => conns()[0]?.subscriptions.size === 1 && text().includes('"id":1'), { what: 'subscribed' });
  const server = conns()[0]!.sock;
  let writes = 0;
  const write = server.write.bind(server) as (...a: unknown[]) => boolean;
  server.write = ((...a: unknown[]) => {
    writes++;
    return write(...a);
  }) as typeof server.write;
  for (let i = 0; i < 200; i++) srv.broadcast(doneEvent(i, 10));
  await waitFor(() => text().split('\n').filter((l) => l.includes('"method":"event"')).length === 200, { what: 'all 200 events' });
  const ids = text()
    .split('\n')
    .filter((l) => l.includes('"method":"event"'))
    .map((l) => (JSON.parse(l) as { params: { job: { id: string } } }).params.job.id);
  t.same(ids, Array.from({ length: 200 }, (_, i) => `j${i}`), 'every event, in order');
  t.ok(writes <= 10, `200 events in ${writes} socket write(s)`);
});
