/**
 * A webhook receiver for tests: a real HTTP server on 127.0.0.1 that keeps
 * every delivery (headers, raw body, whether its signature verifies).
 * `mode`: 'ok' answers 200, 'fail' answers 503, 'stall' never answers.
 * stop()/start() take it off the network and back on the same port.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { verifySignature } from '../../../src/daemon/hooks/sign.js';

export interface Delivery {
  id: string;
  event: string;
  attempt: number;
  body: string;
  json: { id: string; type: string; data: Record<string, unknown> };
  verified: boolean;
  reason?: string;
  at: number;
}

export interface Receiver {
  url: string;
  port: number;
  mode: 'ok' | 'fail' | 'stall';
  /** Requests answered 2xx. */
  readonly delivered: Delivery[];
  /** Every request seen, whatever the answer. */
  readonly seen: Delivery[];
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(secret: string | undefined, port = 0): Promise<Receiver> {
  const delivered: Delivery[] = [];
  const seen: Delivery[] = [];
  const sockets = new Set<Socket>();
  const stalled = new Set<http.ServerResponse>();
  let server: http.Server | undefined;
  const r: Receiver = {
    url: '',
    port,
    mode: 'ok',
    delivered,
    seen,
    async stop() {
      if (!server) return;
      const s = server;
      server = undefined;
      for (const so of sockets) so.destroy();
      stalled.clear();
      await new Promise<void>((res) => s.close(() => res()));
    },
    async start() {
      const s = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const v = secret ? verifySignature({ secret, body, timestamp: req.headers['x-mediacache-timestamp'], signature: req.headers['x-mediacache-signature'] }) : { ok: true as const };
          const d: Delivery = {
            id: String(req.headers['x-mediacache-delivery']),
            event: String(req.headers['x-mediacache-event']),
            attempt: Number(req.headers['x-mediacache-attempt']),
            body,
            json: JSON.parse(body) as Delivery['json'],
            verified: v.ok,
            at: Date.now(),
          };
          if (!v.ok) d.reason = v.reason;
          seen.push(d);
          if (r.mode === 'stall') return void stalled.add(res);
          if (r.mode === 'fail') {
            res.writeHead(503, { 'content-type': 'text/plain' });
            return void res.end('down');
          }
          delivered.push(d);
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('ok');
        });
      });
      s.on('connection', (so) => {
        sockets.add(so);
        so.on('close', () => sockets.delete(so));
      });
      await new Promise<void>((res, rej) => {
        s.once('error', rej);
        s.listen(r.port, '127.0.0.1', () => res());
      });
      r.port = (s.address() as AddressInfo).port;
      r.url = `http://127.0.0.1:${r.port}/hook`;
      server = s;
    },
    close: () => r.stop(),
  };
  await r.start();
  return r;
}

/** Ids delivered more than once. */
export function duplicates(list: Delivery[]): string[] {
  const n = new Map<string, number>();
  for (const d of list) n.set(d.id, (n.get(d.id) ?? 0) + 1);
  return [...n].filter(([, c]) => c > 1).map(([id]) => id);
}
