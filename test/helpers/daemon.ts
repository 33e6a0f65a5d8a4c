/**
 * End-to-end helpers: spawn the real `mediacached` (node bin/mediacached.js,
 * which imports dist/) against throw-away folders, and talk to it with a tiny
 * NDJSON JSON-RPC client.
 *
 *   const d = await startDaemon(t, { args: ['--concurrency', '2'] });
 *   const st = await d.rpc('status', {});          // typed by core/protocol
 *   const c = await d.connect();                   // extra connection
 *   await c.call('subscribe', { events: ['job.done'] });
 *   const ev = await c.nextEvent((e) => e.type === 'job.done');
 *   const exit = await d.stop();                   // SIGTERM, waits for exit
 *
 * Layout: every daemon gets its own root `/tmp/mc-XXXXXX/` (mode 0700, short
 * enough for the 107-byte socket limit) holding `d.sock`, `cache/`, `inbox/`
 * and `xdg/` (XDG_* and HOME point there, so no user config file or real
 * cache is ever touched). Teardown kills the process (SIGKILL if it ignores
 * SIGTERM) and removes the root. The daemon logs at debug level to stderr,
 * which is captured (`d.stderr()`) and never reaches tap's stdout.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { ensureBuilt, REPO_ROOT } from './build.js';
import { EVENT_METHOD, type RpcEvent, type RpcMethodName, type RpcMethods } from '../../src/core/protocol/rpc.js';

export const DAEMON_BIN = path.join(REPO_ROOT, 'bin', 'mediacached.js');

/**
 * The node flags the shipped launcher runs with, read from the shebang of
 * bin/mediacached.js (`#!/usr/bin/env -S node --max-semi-space-size=4`) so
 * tests spawn the daemon exactly as `mediacached`, npm start and the service
 * files do.
 */
export const DAEMON_NODE_ARGS: readonly string[] = (() => {
  const first = fs.readFileSync(DAEMON_BIN, 'utf8').split('\n', 1)[0];
  const m = /^#!\S*env -S node(.*)$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
})();

/** Environment without tap's coverage hooks: for measuring the daemon as deployed (memory). */
export function withoutCoverage(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (k !== 'NODE_OPTIONS' && !k.startsWith('_TAPJS_') && k !== 'NODE_V8_COVERAGE') out[k] = v;
  return out;
}

/** The subset of tap's Test the helpers use (keeps this file loader-agnostic). */
export interface Teardownable {
  teardown(fn: () => unknown): void;
}

export interface DaemonOptions {
  /** Existing root folder to reuse (e.g. restart on the same cache). Default: a fresh /tmp/mc-XXXXXX. */
  root?: string;
  /** Default `<root>/cache`. */
  cacheDir?: string;
  /** Default `<root>/d.sock`. */
  socket?: string;
  /** Inbox folders. Default `[<root>/inbox]`; pass `[]` to give none (the daemon then uses its default under XDG_STATE_HOME=<root>/xdg/state). */
  inboxes?: string[];
  /** Extra CLI arguments, appended after the defaults (so they win for single-valued flags). */
  args?: string[];
  /** Extra environment; MEDIACACHE_* from the test runner's own env are removed first. */
  env?: Record<string, string | undefined>;
  /** false: run without tap's coverage hooks (NODE_OPTIONS), as deployed; for memory measurements. */
  coverage?: boolean;
  /**
   * Do not pass --cache-dir/--socket/--inbox at all (to test env/config-file
   * resolution). `socket` and `cacheDir` still tell the helper where the
   * daemon will be, so set them to what the env/config file says.
   */
  bare?: boolean;
  /** How long to wait for the socket to answer `status`. Default 60000 ms (generous: the machine may be loaded; a daemon that exits fails the wait at once). */
  readyTimeoutMs?: number;
}

export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DaemonHandle {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly root: string;
  readonly cacheDir: string;
  readonly socket: string;
  readonly inboxes: string[];
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string;
  /** Everything the daemon wrote to stdout so far (should stay empty). */
  stdout(): string;
  /** Resolves when the process exits. */
  readonly exited: Promise<DaemonExit>;
  /** Exit status once exited, else undefined. */
  exitStatus(): DaemonExit | undefined;
  /** One shared client connection, opened lazily. */
  rpc<M extends RpcMethodName>(method: M, params: RpcMethods[M]['params']): Promise<RpcMethods[M]['result']>;
  /** A new client connection (closed in teardown). */
  connect(): Promise<RpcClient>;
  /** Send a signal (default SIGTERM). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM (or `signal`) and wait for exit (SIGKILL after `timeoutMs`, default 20000). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<DaemonExit>;
}

/** A JSON-RPC error reply, as the client sees it. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: { code?: string; [k: string]: unknown },
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

/** Any parsed line the server sent. */
export type RpcMessage = {
  jsonrpc?: string;
  id?: number | string | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: { code?: string; [k: string]: unknown } };
};

/**
 * Minimal NDJSON JSON-RPC client for tests: frames on Buffers, keeps every
 * message it receives, matches replies by id, collects `event` notifications.
 * `sendRaw` writes arbitrary bytes (hostile-client tests).
 */
export class RpcClient {
  /** Every message received, in order (replies and notifications). */
  readonly messages: RpcMessage[] = [];
  /** Payloads of `event` notifications, in order. */
  readonly events: RpcEvent[] = [];
  /** Resolves when the server closes (or we close) the connection. */
  readonly closed: Promise<void>;
  private buf: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number | string, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly waiters = new Set<() => void>();
  private isClosed = false;

  private constructor(readonly sock: net.Socket) {
    this.closed = new Promise((resolve) => {
      sock.on('close', () => {
        this.isClosed = true;
        for (const p of this.pending.values()) p.reject(new Error('connection closed'));
        this.pending.clear();
        this.notify();
        resolve();
      });
    });
    sock.on('error', () => {
      /* close follows; tests look at `closed` */
    });
    sock.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      let nl: number;
      while ((nl = this.buf.indexOf(0x0a)) >= 0) {
        const line = this.buf.subarray(0, nl).toString('utf8');
        this.buf = this.buf.subarray(nl + 1);
        if (line.trim()) this.onMessage(JSON.parse(line) as RpcMessage);
      }
    });
  }

  static connect(socketPath: string): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(socketPath);
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve(new RpcClient(s));
      });
      s.once('error', reject);
    });
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  private onMessage(m: RpcMessage): void {
    this.messages.push(m);
    if (m.method === EVENT_METHOD && m.id === undefined) this.events.push(m.params as RpcEvent);
    else if (m.id !== undefined && m.id !== null && this.pending.has(m.id)) {
      const p = this.pending.get(m.id)!;
      this.pending.delete(m.id);
      if (m.error) p.reject(new RpcError(m.error.code, m.error.message, m.error.data));
      else p.resolve(m.result);
    }
    this.notify();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Call a method; rejects with RpcError on an error reply. */
  call<M extends RpcMethodName>(method: M, params: RpcMethods[M]['params']): Promise<RpcMethods[M]['result']>;
  call(method: string, params?: unknown): Promise<unknown>;
  call(method: string, params?: unknown): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.isClosed) return reject(new Error('connection closed'));
      this.pending.set(id, { resolve, reject });
      this.sock.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    });
  }

  /** Build a request line without sending it (for batching/fragmentation tests). */
  requestLine(method: string, params?: unknown, id: number | string = this.nextId++): string {
    return JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n';
  }

  /** Write raw bytes. Resolves when flushed to the kernel (or the socket is gone). */
  sendRaw(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.isClosed || this.sock.destroyed) return resolve();
      this.sock.write(data, () => resolve());
    });
  }

  /** Wait for the first received message matching `pred` (also looks at ones already received). */
  waitMessage(pred: (m: RpcMessage) => boolean, timeoutMs = 10_000): Promise<RpcMessage> {
    return this.waitUntil(() => this.messages.find(pred), timeoutMs, 'message');
  }

  /** Wait for the first event notification matching `pred` (also looks at ones already received). */
  nextEvent(pred: (e: RpcEvent) => boolean = () => true, timeoutMs = 10_000): Promise<RpcEvent> {
    return this.waitUntil(() => this.events.find(pred), timeoutMs, 'event');
  }

  private waitUntil<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const v = probe();
        if (v !== undefined) {
          done();
          resolve(v);
        } else if (this.isClosed) {
          done();
          reject(new Error(`connection closed while waiting for ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Close our end (FIN) and wait for the close. */
  async close(): Promise<void> {
    if (!this.isClosed) this.sock.end();
    const t = setTimeout(() => this.sock.destroy(), 2000);
    await this.closed;
    clearTimeout(t);
  }

  /** Drop the connection at once (RST-like). */
  destroy(): void {
    this.sock.destroy();
  }
}

/** A fresh short root dir: /tmp/mc-XXXXXX (mode 0700). */
export function makeRoot(): string {
  // /tmp, not os.tmpdir(): TMPDIR may be long and the socket must fit in 107 bytes.
  const base = process.platform === 'win32' ? os.tmpdir() : '/tmp';
  return fs.mkdtempSync(path.join(base, 'mc-'));
}

/** The environment a test daemon runs with: no MEDIACACHE_* leaks, XDG_* and HOME inside `root`. */
export function daemonEnv(root: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('MEDIACACHE_')) continue;
    if (['CACHE_DIRECTORY', 'STATE_DIRECTORY', 'RUNTIME_DIRECTORY', 'LOGS_DIRECTORY', 'CONFIGURATION_DIRECTORY', 'LISTEN_PID', 'LISTEN_FDS'].includes(k)) continue;
    env[k] = v;
  }
  const xdg = path.join(root, 'xdg');
  Object.assign(env, {
    HOME: xdg,
    XDG_CONFIG_HOME: path.join(xdg, 'config'),
    XDG_CACHE_HOME: path.join(xdg, 'cache'),
    XDG_STATE_HOME: path.join(xdg, 'state'),
    XDG_RUNTIME_DIR: path.join(xdg, 'run'),
  });
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface SpawnedDaemon {
  proc: ChildProcess;
  exited: Promise<DaemonExit>;
  exitStatus(): DaemonExit | undefined;
  stderr(): string;
  stdout(): string;
}

/**
 * Spawn `node bin/mediacached.js ...args` with `env` and capture its output,
 * without waiting for anything. For tests that expect the daemon to refuse
 * to start (bad config, second instance). Killed in teardown when `t` is given.
 */
export function spawnDaemon(args: string[], env: NodeJS.ProcessEnv, t?: Teardownable): SpawnedDaemon {
  const proc = spawn(process.execPath, [...DAEMON_NODE_ARGS, DAEMON_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  let status: DaemonExit | undefined;
  const exited = new Promise<DaemonExit>((resolve) => {
    proc.on('exit', (code, signal) => {
      status = { code, signal };
      resolve(status);
    });
  });
  if (t) {
    t.teardown(async () => {
      if (!status) {
        proc.kill('SIGKILL');
        await exited;
      }
    });
  }
  return { proc, exited, exitStatus: () => status, stderr: () => err, stdout: () => out };
}

/** Poll the socket until `status` answers; fail at once (with its stderr) when the process exits. */
export async function waitReady(socket: string, sp: Pick<SpawnedDaemon, 'exitStatus' | 'stderr'>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = sp.exitStatus();
    if (st) throw new Error(`daemon exited (code ${st.code}, signal ${st.signal}) before answering on ${socket}:\n${sp.stderr()}`);
    let c: RpcClient | undefined;
    try {
      c = await RpcClient.connect(socket);
      await c.call('status', {});
      return;
    } catch {
      /* not up yet (no socket, or still starting: E_UNAVAILABLE) */
    } finally {
      c?.destroy();
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the daemon on ${socket} to answer status\n--- daemon stderr ---\n${sp.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Build dist if needed, spawn a daemon on fresh temp folders, wait until its
 * socket answers `status`. Everything is cleaned up in `t.teardown`.
 */
export async function startDaemon(t: Teardownable, opts: DaemonOptions = {}): Promise<DaemonHandle> {
  await ensureBuilt();
  const ownRoot = !opts.root;
  const root = opts.root ?? makeRoot();
  const cacheDir = opts.cacheDir ?? path.join(root, 'cache');
  const socket = opts.socket ?? path.join(root, 'd.sock');
  const inboxes = opts.inboxes ?? [path.join(root, 'inbox')];
  const args = opts.bare
    ? ['--log-level', 'debug', ...(opts.args ?? [])]
    : ['--cache-dir', cacheDir, '--socket', socket, ...inboxes.flatMap((i) => ['--inbox', i]), '--log-level', 'debug', ...(opts.args ?? [])];
  const env = daemonEnv(root, opts.env);
  const sp = spawnDaemon(args, opts.coverage === false ? withoutCoverage(env) : env);
  const clients = new Set<RpcClient>();
  let shared: Promise<RpcClient> | undefined;

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<DaemonExit> => {
    const st = sp.exitStatus();
    if (st) return st;
    sp.proc.kill(signal);
    const timer = setTimeout(() => sp.proc.kill('SIGKILL'), timeoutMs);
    const r = await sp.exited;
    clearTimeout(timer);
    return r;
  };

  t.teardown(async () => {
    for (const c of clients) c.destroy();
    await stop('SIGTERM', 10_000);
    if (ownRoot) fs.rmSync(root, { recursive: true, force: true });
  });

  await waitReady(socket, sp, opts.readyTimeoutMs);

  const connect = async (): Promise<RpcClient> => {
    const c = await RpcClient.connect(socket);
    clients.add(c);
    void c.closed.then(() => clients.delete(c));
    return c;
  };

  return {
    proc: sp.proc,
    pid: sp.proc.pid!,
    root,
    cacheDir,
    socket,
    inboxes,
    stderr: sp.stderr,
    stdout: sp.stdout,
    exited: sp.exited,
    exitStatus: sp.exitStatus,
    async rpc(method, params) {
      shared ??= connect();
      let c = await shared;
      if (!c.isOpen) {
        shared = connect();
        c = await shared;
      }
      return c.call(method, params);
    },
    connect,
    kill: (signal = 'SIGTERM') => void sp.proc.kill(signal),
    stop,
  };
}
