import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import {
  ConnectionLostError,
  DaemonUnreachableError,
  ProtocolError,
  RequestTimeoutError,
  RpcClient,
  RpcReplyError,
} from '../../src/client/rpc-client.js';
import type { RpcEvent } from '../../src/core/protocol/rpc.js';
import { appFault, NO_REPLY, RpcFault, startFakeServer, tempSocketPath, type Conn } from './ndjson-server.js';
import { waitFor } from '../helpers/wait.js';

const stats = { totalFiles: 1, totalSize: 10, byType: {}, queue: { queued: 0, running: 0, done: 1, failed: 0 } };

t.test('many requests in flight are matched to their replies, whatever the order', async (t) => {
  const srv = await startFakeServer({
    // Answers in reverse order of the delay it is given.
    jobs: async (p) => {
      await new Promise((r) => setTimeout(r, Number(p.limit) * 20));
      return { jobs: [], total: Number(p.limit) };
    },
  });
  t.teardown(() => srv.close());
  const c = await RpcClient.connect(srv.socket);
  t.teardown(() => c.close());
  const limits = [5, 1, 4, 2, 3];
  const results = await Promise.all(limits.map((limit) => c.call('jobs', { limit })));
  t.same(
    results.map((r) => r.total),
    limits,
  );
  t.equal(srv.requests.length, 5);
});

t.test('frames are found in raw bytes: split packets, split UTF-8, coalesced messages', async (t) => {
  let conn: Conn | undefined;
  const srv = await startFakeServer({
    status: (_p, cn) => {
      conn = cn;
      return NO_REPLY;
    },
    stats: () => NO_REPLY,
  });
  t.teardown(() => srv.close());
  const c = await RpcClient.connect(srv.socket);
  t.teardown(() => c.close());
  const events: RpcEvent[] = [];
  c.onEvent((e) => events.push(e));

  // Reply 1 (status, id 1) carries a multi-byte character; send it one byte per packet.
  const p1 = c.call('status', {});
  await waitFor(() => conn, { what: 'request' });
  const reply1 = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { version: 'é✓ü', pid: 1 } }) + '\n');
  for (let i = 0; i < reply1.length; i++) {
    conn!.raw(reply1.subarray(i, i + 1));
    // Let each byte go out as its own packet.
    await new Promise((r) => setImmediate(r));
  }
  const r1 = await p1;
  t.equal(r1.version, 'é✓ü', 'UTF-8 split across packets decodes intact');

  // An event and two replies in one write, the last one cut in the middle.
  const p2 = c.call('stats', {});
  const p3 = c.call('stats', {});
  await waitFor(() => srv.requests.length >= 3, { what: 'requests' });
  const ev = { jsonrpc: '2.0', method: 'event', params: { type: 'job.progress', jobId: 'j1', url: 'http://x/a', bytes: 5 } };
  const a = JSON.stringify(ev) + '\n' + JSON.stringify({ jsonrpc: '2.0', id: 3, result: { ...stats, totalFiles: 3 } }) + '\n';
  const b = JSON.stringify({ jsonrpc: '2.0', id: 2, result: { ...stats, totalFiles: 2 } }) + '\r\n';
  conn!.raw(a + b.slice(0, 10));
  const r3 = await p3;
  t.equal(r3.totalFiles, 3);
  conn!.raw(b.slice(10));
  const r2 = await p2;
  t.equal(r2.totalFiles, 2, 'CRLF-terminated reply accepted');
  t.same(events, [ev.params], 'the notification went to the event listener, not to a request');
});

t.test('error replies carry the SPEC code from error.data.code', async (t) => {
  const srv = await startFakeServer({
    find: () => {
      throw appFault('E_NOT_FOUND', 'no cached file matches abc');
    },
    verify: () => {
      throw new RpcFault(-32602, 'Invalid params: md5 must be hex');
    },
  });
  t.teardown(() => srv.close());
  const c = await RpcClient.connect(srv.socket);
  t.teardown(() => c.close());
  const e1 = await c.call('find', { md5: 'abc' }).catch((e: unknown) => e);
  t.ok(e1 instanceof RpcReplyError);
  t.equal((e1 as RpcReplyError).code, 'E_NOT_FOUND');
  t.equal((e1 as RpcReplyError).rpcCode, -32000);
  t.match((e1 as Error).message, /no cached file/);
  const e2 = await c.call('verify', { md5: 'zz' }).catch((e: unknown) => e);
  t.equal((e2 as RpcReplyError).code, 'E_BAD_REQUEST', '-32602 without data maps to E_BAD_REQUEST');
  const e3 = await c.call('sweep', {}).catch((e: unknown) => e);
  t.equal((e3 as RpcReplyError).rpcCode, -32601);
  t.equal((e3 as RpcReplyError).code, 'E_BAD_REQUEST');
  // The connection is still usable after errors.
  srv.handle('stats', () => stats);
  t.equal((await c.call('stats', {})).totalFiles, 1);
});

t.test('every pending request fails at once when the connection closes', async (t) => {
  const srv = await startFakeServer({ stats: () => NO_REPLY, status: () => NO_REPLY });
  t.teardown(() => srv.close());
  const c = await RpcClient.connect(srv.socket);
  const closed = new Promise<Error | undefined>((r) => c.onClose(r));
  const calls = [c.call('stats', {}), c.call('status', {}), c.call('stats', {})].map((p) => p.catch((e: unknown) => e));
  await waitFor(() => srv.requests.length === 3, { what: 'requests' });
  for (const cn of srv.conns) cn.sock.destroy();
  const errs = await Promise.all(calls);
  for (const e of errs) {
    t.ok(e instanceof ConnectionLostError, 'rejected with ConnectionLostError');
    t.match((e as Error).message, srv.socket);
  }
  t.ok((await closed) instanceof ConnectionLostError, 'close listener told why');
  t.ok(c.closed);
  const late = await c.call('stats', {}).catch((e: unknown) => e);
  t.ok(late instanceof ConnectionLostError, 'a call after close fails at once');
});

t.test('a request times out alone; a late reply is ignored; the connection stays usable', async (t) => {
  let slow = true;
  const srv = await startFakeServer({
    stats: async () => {
      if (slow) {
        slow = false;
        await new Promise((r) => setTimeout(r, 300));
      }
      return stats;
    },
  });
  t.teardown(() => srv.close());
  const c = await RpcClient.connect(srv.socket, { requestTimeoutMs: 100 });
  t.teardown(() => c.close());
  const started = Date.now();
  const e = await c.call('stats', {}).catch((x: unknown) => x);
  t.ok(e instanceof RequestTimeoutError);
  t.equal((e as RequestTimeoutError).code, 'E_TIMEOUT');
  t.ok(Date.now() - started < 250, 'timed out near 100 ms');
  const ok = await c.call('stats', {}, { timeoutMs: 0 });
  t.equal(ok.totalFiles, 1);
  // Let the late reply of the first call arrive; nothing must break.
  await waitFor(() => srv.requests.length === 2);
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await c.call('stats', {})).totalFiles, 1);
});

t.test('unreachable daemon: missing socket, stale socket, not a socket', async (t) => {
  const { dir, socket } = tempSocketPath();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

  let started = Date.now();
  const e1 = await RpcClient.connect(socket).catch((e: unknown) => e);
  t.ok(e1 instanceof DaemonUnreachableError);
  t.equal((e1 as DaemonUnreachableError).errno, 'ENOENT');
  t.match((e1 as Error).message, socket, 'names the socket path');
  t.match((e1 as Error).message, /mediacached/, 'says how to start the daemon');
  t.match((e1 as Error).message, /systemctl --user start mediacached/);
  t.ok(Date.now() - started < 1000, 'fails fast');

  // A socket file left by a process that died without closing its server.
  const r = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.exit(0))`]);
  t.equal(r.status, 0);
  t.ok(fs.statSync(socket).isSocket());
  started = Date.now();
  const e2 = await RpcClient.connect(socket).catch((e: unknown) => e);
  t.equal((e2 as DaemonUnreachableError).errno, 'ECONNREFUSED');
  t.match((e2 as Error).message, /stale socket/);
  t.ok(Date.now() - started < 1000);

  const file = path.join(dir, 'plain');
  fs.writeFileSync(file, 'x');
  const e3 = await RpcClient.connect(file).catch((e: unknown) => e);
  t.ok(e3 instanceof DaemonUnreachableError, `a regular file: ${(e3 as DaemonUnreachableError).errno}`);

  // EACCES cannot be produced as root; check the wording it gets.
  const e4 = new DaemonUnreachableError('/run/x.sock', 'EACCES');
  t.match(e4.message, /permission denied/);
  t.match(e4.message, '/run/x.sock');
});

t.test('protocol errors: a non-JSON line and an endless line fail pending requests', async (t) => {
  const srv = await startFakeServer({
    stats: (_p, cn) => {
      cn.raw('this is not json\n');
      return NO_REPLY;
    },
    status: (_p, cn) => {
      cn.raw(Buffer.alloc(3000, 0x61));
      return NO_REPLY;
    },
  });
  t.teardown(() => srv.close());
  const c1 = await RpcClient.connect(srv.socket);
  const e1 = await c1.call('stats', {}).catch((e: unknown) => e);
  t.ok(e1 instanceof ProtocolError);
  t.match((e1 as Error).message, /not JSON/);
  const c2 = await RpcClient.connect(srv.socket, { maxFrameBytes: 1024 });
  const e2 = await c2.call('status', {}).catch((e: unknown) => e);
  t.ok(e2 instanceof ProtocolError);
  t.match((e2 as Error).message, /longer than 1024/);
});
