/**
 * RpcServer in-process over a real Unix socket: framing, error mapping,
 * hostile clients, subscriptions, socket permissions and stale sockets.
 * (The same behaviours through the real binary: daemon-clients.test.ts.)
 */
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { RpcServer, InvalidParamsError, type RpcConnection, type RpcHandler } from '../../../src/daemon/rpc/server.js';
import { MediaCacheError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { RPC_ERRORS, type EventName } from '../../../src/core/protocol/rpc.js';
import { makeRoot, RpcClient, RpcError } from '../../helpers/daemon.js';
import { waitFor } from '../../helpers/wait.js';

const errors: string[] = [];
const logger = { ...silentLogger, error: (m: string) => void errors.push(m) };

let release: (() => void) | undefined;
let bigCalls = 0;
const handlers: Record<string, RpcHandler> = {
  echo: async (p) => p,
  slow: async (p) => {
    await new Promise<void>((r) => (release = r));
    return p;
  },
  delay: async (p) => {
    await new Promise((r) => setTimeout(r, (p as { ms: number }).ms));
    return (p as { ms: number }).ms;
  },
  bad: async () => {
    throw new InvalidParamsError('urls must be a non-empty array of strings');
  },
  app: async () => {
    throw new MediaCacheError('E_NOT_FOUND', 'no such md5 abc', { url: 'http://x/' });
  },
  boom: async () => {
    throw new TypeError('undefined is not a function');
  },
  subscribe: async (p, conn: RpcConnection) => {
    conn.subscribe((p as { events: EventName[] }).events);
    return { events: [...conn.subscriptions] };
  },
  big: async (p) => {
    bigCalls++;
    return 'x'.repeat((p as { n: number }).n);
  },
};

async function start(t: Tap, opts: Partial<ConstructorParameters<typeof RpcServer>[0]> = {}): Promise<{ srv: RpcServer; sock: string; root: string }> {
  const root = makeRoot();
  const sock = path.join(root, 'run', 'd.sock');
  const srv = new RpcServer({ socketPath: sock, handlers, logger, ...opts });
  await srv.listen();
  t.teardown(async () => {
    await srv.close();
    fs.rmSync(root, { recursive: true, force: true });
  });
  return { srv, sock, root };
}
type Tap = Test;

async function client(t: Tap, sock: string): Promise<RpcClient> {
  const c = await RpcClient.connect(sock);
  t.teardown(() => c.destroy());
  return c;
}

t.test('socket is 0600 in a 0700 directory, removed on close', async (t) => {
  const { srv, sock } = await start(t);
  t.equal(fs.statSync(sock).mode & 0o777, 0o600);
  t.equal(fs.statSync(path.dirname(sock)).mode & 0o777, 0o700);
  await srv.close();
  t.notOk(fs.existsSync(sock));
});

t.test('refuses a socket directory others can write', async (t) => {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.chmodSync(root, 0o777);
  const srv = new RpcServer({ socketPath: path.join(root, 'd.sock'), handlers, logger });
  await t.rejects(srv.listen(), { name: 'StartupError', message: /writable by group or others \(mode 777\).*chmod 700/ });
});

t.test('a stale socket file is replaced; a live one is not stolen', async (t) => {
  const root = makeRoot();
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const sock = path.join(root, 'd.sock');
  // A socket file nobody listens on: a process that bound it was SIGKILLed.
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((r) => child.stdout.once('data', r));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  t.ok(fs.statSync(sock).isSocket(), 'stale socket file exists');
  const srv = new RpcServer({ socketPath: sock, handlers, logger });
  await srv.listen();
  t.teardown(() => srv.close());
  const c = await client(t, sock);
  t.same(await c.call('echo', { a: 1 }), { a: 1 }, 'new server answers on the replaced socket');

  const second = new RpcServer({ socketPath: sock, handlers, logger });
  await t.rejects(second.listen(), { name: 'StartupError', message: /already listening on/ });
  t.same(await c.call('echo', { still: true }), { still: true }, 'first server unaffected');
});

t.test('framing: byte-by-byte, several per packet, split UTF-8', async (t) => {
  const { sock } = await start(t);
  const c = await client(t, sock);
  const line = c.requestLine('echo', { s: 'żółw 🐢' }, 'frag');
  for (const byte of Buffer.from(line)) await c.sendRaw(Buffer.from([byte]));
  const m = await c.waitMessage((m) => m.id === 'frag');
  t.same(m.result, { s: 'żółw 🐢' });

  const batch = [1, 2, 3, 4, 5].map((i) => c.requestLine('echo', { i }, `b${i}`)).join('');
  await c.sendRaw(batch + '\r\n\n');
  for (const i of [1, 2, 3, 4, 5]) t.same((await c.waitMessage((m) => m.id === `b${i}`)).result, { i });
  // A JSON-RPC batch array is answered with an array.
  await c.sendRaw(JSON.stringify([{ jsonrpc: '2.0', id: 'x1', method: 'echo', params: [1] }, { jsonrpc: '2.0', id: 'x2', method: 'nope' }]) + '\n');
  await waitFor(() => c.messages.some((m) => Array.isArray(m)), { what: 'batch reply' });
});

t.test('errors: parse, invalid request, unknown method, bad params, app, internal', async (t) => {
  const { sock } = await start(t);
  const c = await client(t, sock);
  await c.sendRaw('{"jsonrpc":"2.0","id":1,"method":\n');
  const parse = await c.waitMessage((m) => m.error?.code === RPC_ERRORS.PARSE);
  t.equal(parse.id, null);
  t.equal(parse.error?.data?.code, 'E_BAD_REQUEST');
  await c.sendRaw('{"hello":"world","id":7}\n');
  const inv = await c.waitMessage((m) => m.error?.code === RPC_ERRORS.INVALID_REQUEST);
  t.equal(inv.id, 7);
  t.same(await c.call('echo', 'still works'), 'still works', 'connection usable after garbage');

  const expectErr = async (method: string, code: number, dataCode: string): Promise<RpcError> => {
    try {
      await c.call(method, {});
    } catch (e) {
      t.type(e, RpcError);
      t.equal((e as RpcError).code, code, `${method} → ${code}`);
      t.equal((e as RpcError).data?.code, dataCode);
      return e as RpcError;
    }
    throw new Error(`${method} did not fail`);
  };
  await expectErr('nope', RPC_ERRORS.METHOD_NOT_FOUND, 'E_BAD_REQUEST');
  const bad = await expectErr('bad', RPC_ERRORS.INVALID_PARAMS, 'E_BAD_REQUEST');
  t.match(bad.message, /non-empty array/);
  const app = await expectErr('app', RPC_ERRORS.APP, 'E_NOT_FOUND');
  t.equal(app.data?.url, 'http://x/');
  errors.length = 0;
  await expectErr('boom', RPC_ERRORS.INTERNAL, 'E_INTERNAL');
  t.match(errors.join('\n'), /boom/, 'unexpected error is logged');
  t.same(await c.call('echo', 1), 1, 'server still serves');
});

t.test('many requests in flight on one connection, answered out of order', async (t) => {
  const { sock } = await start(t);
  const c = await client(t, sock);
  const order: number[] = [];
  await Promise.all([300, 10, 150].map((ms) => c.call('delay', { ms }).then((v) => void order.push(v as number))));
  t.same(order, [10, 150, 300]);
});

t.test('a frame over the limit gets an error and a close, without buffering it', async (t) => {
  const { srv, sock } = await start(t, { maxFrameBytes: 64 * 1024 });
  const c = await client(t, sock);
  const big = Buffer.alloc(8 * 1024 * 1024, 0x61); // 8 MiB, no newline
  void c.sendRaw(big);
  const m = await c.waitMessage((m) => m.error?.code === RPC_ERRORS.FRAME_TOO_LARGE);
  t.equal(m.error?.data?.code, 'E_BAD_REQUEST');
  await c.closed;
  t.pass('connection closed by the server');
  const c2 = await client(t, sock);
  t.same(await c2.call('echo', 'ok'), 'ok', 'server fine for others');
  await waitFor(() => srv.connectionCount === 1, { what: 'closed connection forgotten' });
});

t.test('client disconnecting mid-request is harmless', async (t) => {
  const { sock } = await start(t);
  const c = await client(t, sock);
  const p = c.call('slow', { x: 1 }).catch((e: Error) => e);
  await waitFor(() => release !== undefined, { what: 'slow handler running' });
  c.destroy();
  await c.closed;
  release!();
  release = undefined;
  t.type(await p, Error);
  const c2 = await client(t, sock);
  t.same(await c2.call('echo', 2), 2);
});

t.test('subscribers get events they asked for; unsubscribed on close', async (t) => {
  const { srv, sock } = await start(t);
  const a = await client(t, sock);
  const b = await client(t, sock);
  t.same(await a.call('subscribe', { events: ['sweep.done'] }), { events: ['sweep.done'] });
  await b.call('subscribe', { events: ['job.progress'] });
  srv.broadcast({ type: 'job.progress', jobId: 'j1', url: 'http://x/', bytes: 10 });
  srv.broadcast({ type: 'sweep.progress', sweepId: 's', step: 'rehash', done: 1 });
  const ev = await b.nextEvent();
  t.same(ev, { type: 'job.progress', jobId: 'j1', url: 'http://x/', bytes: 10 });
  t.same(await a.call('echo', 0), 0);
  t.equal(a.events.length, 0, 'a did not get unsubscribed types');
  t.equal(b.events.length, 1);
  b.destroy();
  await b.closed;
  srv.broadcast({ type: 'job.progress', jobId: 'j2', url: 'http://x/', bytes: 20 });
  t.same(await a.call('echo', 0), 0, 'broadcast to a closed connection does not throw');
});

t.test('backpressure: a client that does not read stops being read', async (t) => {
  const { sock } = await start(t, { highWaterBytes: 256 * 1024, maxInflight: 8 });
  bigCalls = 0;
  const raw = net.createConnection(sock);
  t.teardown(() => raw.destroy());
  await new Promise((r) => raw.once('connect', r));
  raw.pause(); // never read replies
  // Ask for 200 × 64 KiB replies; the server must stop reading before producing all of them.
  let sent = 0;
  for (let i = 0; i < 200; i++) {
    raw.write(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'big', params: { n: 64 * 1024 } }) + '\n');
    sent++;
  }
  t.equal(sent, 200);
  // Let the server do all it is willing to do for a client that does not read.
  await waitFor(() => bigCalls >= 8, { what: 'first replies produced' });
  const c = await client(t, sock);
  for (let i = 0; i < 20; i++) await c.call('echo', i);
  t.ok(bigCalls < 100, `server stopped working for a client that does not read (${bigCalls} of 200 requests run)`);
  // Now read everything: all replies must still arrive.
  let got = 0;
  let buf = '';
  raw.setEncoding('utf8');
  raw.on('data', (s: string) => {
    buf += s;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      buf = buf.slice(nl + 1);
      got++;
    }
  });
  raw.resume();
  await waitFor(() => got === 200, { timeoutMs: 20_000, what: 'all 200 replies' });
  t.equal(got, 200);
});
