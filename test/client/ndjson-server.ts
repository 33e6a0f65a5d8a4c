/**
 * A tiny NDJSON JSON-RPC server on a real Unix socket, for testing mcctl and
 * its RpcClient without the daemon: exit codes, framing (split and coalesced
 * packets), notifications and rendering. Handlers are plain functions; what
 * they throw as RpcFault becomes an error reply. Not a stand-in for the
 * daemon's behaviour — the e2e tests (mcctl-e2e.test.ts) use the real one.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RPC_ERRORS } from '../../src/core/protocol/rpc.js';
import type { ErrorCode } from '../../src/core/errors.js';

export class RpcFault extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: { code: ErrorCode; [k: string]: unknown },
  ) {
    super(message);
  }
}

/** An app error as the daemon sends it (-32000 with data.code). */
export function appFault(code: ErrorCode, message: string): RpcFault {
  return new RpcFault(RPC_ERRORS.APP, message, { code });
}

export interface Conn {
  readonly sock: net.Socket;
  /** Push an `event` notification. */
  notify(event: unknown): void;
  /** Write raw bytes (framing tests). */
  raw(data: string | Buffer): void;
  /** Send the result of request `id`. */
  reply(id: number, result: unknown): void;
}

/** `id` is the request's id, for handlers that answer later themselves (NO_REPLY, then conn.reply). */
export type MethodHandler = (params: Record<string, unknown>, conn: Conn, id: number) => unknown;

export interface FakeServer {
  readonly socket: string;
  /** Every request received, in order. */
  readonly requests: Array<{ method: string; params: unknown }>;
  readonly conns: Set<Conn>;
  handle(method: string, fn: MethodHandler): void;
  close(): Promise<void>;
}

/** A short socket path in a fresh private dir (/tmp, not TMPDIR: 107-byte limit). */
export function tempSocketPath(): { dir: string; socket: string } {
  const dir = fs.mkdtempSync(path.join(process.platform === 'win32' ? os.tmpdir() : '/tmp', 'mcc-'));
  return { dir, socket: path.join(dir, 's.sock') };
}

export async function startFakeServer(handlers: Record<string, MethodHandler> = {}): Promise<FakeServer> {
  const { dir, socket } = tempSocketPath();
  const table = new Map(Object.entries(handlers));
  const requests: FakeServer['requests'] = [];
  const conns = new Set<Conn>();
  const server = net.createServer((sock) => {
    const conn: Conn = {
      sock,
      notify: (event) => void sock.write(JSON.stringify({ jsonrpc: '2.0', method: 'event', params: event }) + '\n'),
      raw: (data) => void sock.write(data),
      reply: (id, result) => void sock.write(JSON.stringify({ jsonrpc: '2.0', id, result }) + '\n'),
    };
    conns.add(conn);
    sock.on('close', () => conns.delete(conn));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      let nl: number;
      while ((nl = buf.indexOf(0x0a)) >= 0) {
        const line = buf.subarray(0, nl).toString('utf8');
        buf = buf.subarray(nl + 1);
        if (!line.trim()) continue;
        const msg = JSON.parse(line) as { id: number; method: string; params: Record<string, unknown> };
        requests.push({ method: msg.method, params: msg.params });
        void answer(conn, msg);
      }
    });
  });
  async function answer(conn: Conn, msg: { id: number; method: string; params: Record<string, unknown> }): Promise<void> {
    const fn = table.get(msg.method);
    let reply: unknown;
    try {
      if (!fn) throw new RpcFault(RPC_ERRORS.METHOD_NOT_FOUND, `Method not found: ${msg.method}`);
      const result = await fn(msg.params ?? {}, conn, msg.id);
      if (result === NO_REPLY) return;
      reply = { jsonrpc: '2.0', id: msg.id, result: result ?? null };
    } catch (e) {
      const f = e instanceof RpcFault ? e : new RpcFault(RPC_ERRORS.INTERNAL, String(e));
      reply = { jsonrpc: '2.0', id: msg.id, error: { code: f.code, message: f.message, ...(f.data ? { data: f.data } : {}) } };
    }
    if (!conn.sock.destroyed) conn.sock.write(JSON.stringify(reply) + '\n');
  }
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    requests,
    conns,
    handle: (m, fn) => void table.set(m, fn),
    close: async () => {
      for (const c of conns) c.sock.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Return this from a handler to send no reply at all (the handler answers later via conn.raw, or never). */
export const NO_REPLY = Symbol('no reply');
