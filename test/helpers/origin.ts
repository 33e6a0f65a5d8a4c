/**
 * A loopback HTTP origin for tests and benchmarks: real sockets on 127.0.0.1,
 * a route table, hit counters, and hostile behaviours on demand.
 */
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

export const FIXTURE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const COLLISION_DIR = path.join(FIXTURE_DIR, 'md5-collision');

export function fixture(name: string): Buffer {
  return fs.readFileSync(path.join(FIXTURE_DIR, name));
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface Route {
  status?: number;
  headers?: Record<string, string | number>;
  body?: Buffer | string;
  /** Send the body at about this many bytes per second (in 16 KiB steps). */
  bytesPerSec?: number;
  handler?: Handler;
}

export interface Origin {
  readonly base: string;
  url(p: string): string;
  route(p: string, r: Route | Handler): void;
  hits(p: string): number;
  totalHits(): number;
  close(): Promise<void>;
}

function sendThrottled(res: http.ServerResponse, body: Buffer, bps: number): void {
  const chunk = 16 * 1024;
  const interval = Math.max(1, Math.round((chunk / bps) * 1000));
  let off = 0;
  const tick = (): void => {
    if (res.destroyed) return;
    const end = Math.min(off + chunk, body.length);
    res.write(body.subarray(off, end));
    off = end;
    if (off >= body.length) res.end();
    else setTimeout(tick, interval);
  };
  tick();
}

/** `host`: the loopback address to listen on (default 127.0.0.1; '::1' for a second hostname). */
export async function startOrigin(host = '127.0.0.1'): Promise<Origin> {
  const routes = new Map<string, Route | Handler>();
  const hitCount = new Map<string, number>();
  let total = 0;
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    const key = routes.has(req.url ?? '') ? (req.url ?? '') : p;
    hitCount.set(key, (hitCount.get(key) ?? 0) + 1);
    total++;
    const r = routes.get(key);
    if (!r) {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html><body>not found</body></html>');
      return;
    }
    if (typeof r === 'function') return r(req, res);
    if (r.handler) return r.handler(req, res);
    const body = typeof r.body === 'string' ? Buffer.from(r.body) : (r.body ?? Buffer.alloc(0));
    const headers: Record<string, string | number> = { 'content-length': body.length, ...(r.headers ?? {}) };
    res.writeHead(r.status ?? 200, headers);
    if (req.method === 'HEAD') return void res.end();
    if (r.bytesPerSec) sendThrottled(res, body, r.bytesPerSec);
    else res.end(body);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    base,
    url: (p) => base + (p.startsWith('/') ? p : `/${p}`),
    route: (p, r) => void routes.set(p.startsWith('/') ? p : `/${p}`, r),
    hits: (p) => hitCount.get(p.startsWith('/') ? p : `/${p}`) ?? 0,
    totalHits: () => total,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Routes that answer after `delayMs`, counting requests in flight (the most at once is `peak()`). */
export function countingRoutes(origin: Origin, bodies: Map<string, Buffer>, delayMs: number): { peak: () => number } {
  let inflight = 0;
  let peak = 0;
  for (const [p, body] of bodies) {
    origin.route(p, (_req, res) => {
      inflight++;
      peak = Math.max(peak, inflight);
      setTimeout(() => {
        inflight--;
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      }, delayMs);
    });
  }
  return { peak: () => peak };
}

/** A route whose request waits until `release()` is called, then answers `body`. */
export function heldRoute(origin: Origin, p: string, body: Buffer): { release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  origin.route(p, async (_req, res) => {
    await gate;
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  return { release };
}
