/**
 * Origins that answer with something that is not valid HTTP/1.1: each kind
 * of garbage is E_PROTOCOL (the origin's fault), fails at once and costs one
 * connection, in the library and through the scheduler.
 */
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MediaCache } from '../../../src/core/cache/media-cache.js';
import { silentLogger } from '../../../src/core/util/logger.js';
import { JobStore } from '../../../src/daemon/jobs/job-store.js';
import { Scheduler } from '../../../src/daemon/jobs/scheduler.js';

type Tt = Parameters<Parameters<typeof t.test>[0]>[0];

/** What each raw server answers to any request. */
const GARBAGE: Record<string, string> = {
  'header overflow': `HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`,
  'bad chunk size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
  'Transfer-Encoding with Content-Length': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'not HTTP at all': 'SSH-2.0-OpenSSH_9.2p1\r\n',
};

async function garbageServer(t: Tt, reply: string): Promise<{ url: string; connections: () => number }> {
  let connections = 0;
  const srv = net.createServer((s) => {
    connections++;
    s.on('error', () => undefined);
    s.once('data', () => s.end(reply));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return { url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/m.png`, connections: () => connections };
}

t.test('each kind of garbage is E_PROTOCOL, not retried', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mc-proto-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  // Retries on, with delays long enough that a retry would show in the time taken.
  const cache = await MediaCache.open({ cacheDir: path.join(root, 'c'), retries: 3, retryBaseDelayMs: 2000, timeoutMs: 5000 });
  const store = await JobStore.open(path.join(root, 'jobs'), { flushDelayMs: 10 });
  const sched = new Scheduler({ cache, store, concurrency: 4, logger: silentLogger, retries: 3, retryBaseMs: 2000, lagWindowMs: 0 });
  t.teardown(async () => {
    await sched.drain(0);
    await store.close();
    await cache.close();
  });
  sched.start();
  for (const [kind, reply] of Object.entries(GARBAGE)) {
    const lib = await garbageServer(t, reply);
    const t0 = Date.now();
    const err = await cache.download(lib.url).catch((e: unknown) => e);
    t.match(err, { code: 'E_PROTOCOL', retryable: false, status: undefined }, `${kind}: library`);
    t.equal(lib.connections(), 1, `${kind}: library made one connection`);

    const daemonSide = await garbageServer(t, reply);
    const [j] = await sched.enqueue([{ url: daemonSide.url, source: 'rpc' }], { priority: 0 });
    const [end] = await sched.wait([j.id]);
    t.match(end, { state: 'failed', attempts: 1, error: { code: 'E_PROTOCOL' } }, `${kind}: job failed at once`);
    t.equal(daemonSide.connections(), 1, `${kind}: job made one connection`);
    t.ok(Date.now() - t0 < 1900, `${kind}: no backoff (${Date.now() - t0} ms)`);
  }
});
