/**
 * The client end of the daemon's JSON-RPC 2.0 socket: one
 * connection, newline-delimited JSON framed on Buffers, many
 * requests in flight, `event` notifications kept apart from replies.
 *
 * Invariants:
 * - A frame ends only at a 0x0a byte found in the raw bytes, so a line split
 *   across packets (or a multi-byte UTF-8 character split across packets) is
 *   reassembled before it is decoded; several lines in one packet are all read.
 * - Every pending request settles exactly once: with its reply, its timeout,
 *   or — all of them at once — when the connection closes.
 * - Connecting fails fast with DaemonUnreachableError, which names the socket
 *   path tried and how to start the daemon (mcctl exits 3 on it).
 */
import net from 'node:net';
import { isErrorCode, MediaCacheError, type ErrorCode } from '../core/errors.js';
import { EVENT_METHOD, EVENTS_DROPPED_METHOD, MAX_FRAME_BYTES, RPC_ERRORS, type RpcErrorData, type RpcEvent, type ClientMethodName, type ClientMethods } from '../core/protocol/rpc.js';
import { LineSplitter } from '../core/protocol/ndjson.js';

/** How to get a daemon running; printed whenever it cannot be reached. */
export const START_HINT =
  'Start the daemon with `mediacached` (from a checkout: `npm start`; as a service: `systemctl --user start mediacached`), ' +
  'or point mcctl at a running one with --socket PATH or MEDIACACHE_SOCKET.';

const ERRNO_EXPLAINED: Record<string, string> = {
  ENOENT: 'no socket file there: the daemon is not running, or listens elsewhere',
  ECONNREFUSED: 'nothing is listening on it: a stale socket left by a daemon that stopped',
  EACCES: 'permission denied: the socket belongs to another user or its folder is private',
  EPERM: 'permission denied',
  ENOTSOCK: 'that path is not a socket',
  ENOTDIR: 'a component of the path is not a folder',
  ETIMEDOUT: 'the connection attempt timed out',
};

/** The daemon could not be reached at all (connect failed or timed out). */
export class DaemonUnreachableError extends MediaCacheError {
  readonly socketPath: string;
  /** Node errno code (ENOENT, ECONNREFUSED, EACCES, …) or ETIMEDOUT. */
  readonly errno: string;
  constructor(socketPath: string, errno: string, cause?: unknown) {
    const why = ERRNO_EXPLAINED[errno] ?? (cause instanceof Error ? cause.message : errno);
    super('E_UNAVAILABLE', `cannot reach the mediacache daemon at ${socketPath} (${errno}: ${why}).\n${START_HINT}`, { cause });
    this.name = 'DaemonUnreachableError';
    this.socketPath = socketPath;
    this.errno = errno;
  }
}

/** The connection dropped (daemon stopped or crashed) while a request was pending. */
export class ConnectionLostError extends MediaCacheError {
  readonly socketPath: string;
  constructor(socketPath: string, detail?: string) {
    super('E_UNAVAILABLE', `the daemon at ${socketPath} closed the connection${detail ? ` (${detail})` : ''}.\n${START_HINT}`);
    this.name = 'ConnectionLostError';
    this.socketPath = socketPath;
  }
}

/** No reply within the request timeout. */
export class RequestTimeoutError extends MediaCacheError {
  readonly socketPath: string;
  constructor(socketPath: string, method: string, ms: number) {
    super('E_TIMEOUT', `the daemon at ${socketPath} did not answer "${method}" within ${ms} ms (raise --timeout, 0 = wait forever)`);
    this.name = 'RequestTimeoutError';
    this.socketPath = socketPath;
  }
}

/** The daemon sent something that is not JSON-RPC (a bug on its side). */
export class ProtocolError extends MediaCacheError {
  constructor(message: string) {
    super('E_UNAVAILABLE', `protocol error: ${message}`);
    this.name = 'ProtocolError';
  }
}

/** An error reply. `code` is the stable error code from `error.data.code` (or derived from the JSON-RPC code). */
export class RpcReplyError extends MediaCacheError {
  /** The JSON-RPC error code (-32602, -32000, …). */
  readonly rpcCode: number;
  readonly data?: RpcErrorData;
  constructor(rpcCode: number, message: string, data?: RpcErrorData) {
    super(codeForReply(rpcCode, data), message, { status: data?.status, url: data?.url });
    this.name = 'RpcReplyError';
    this.rpcCode = rpcCode;
    if (data) this.data = data;
  }
}

function codeForReply(rpcCode: number, data?: { code?: unknown }): ErrorCode {
  if (isErrorCode(data?.code)) return data.code;
  switch (rpcCode) {
    case RPC_ERRORS.INVALID_PARAMS:
    case RPC_ERRORS.INVALID_REQUEST:
    case RPC_ERRORS.METHOD_NOT_FOUND:
    case RPC_ERRORS.PARSE:
    case RPC_ERRORS.FRAME_TOO_LARGE:
      return 'E_BAD_REQUEST';
    default:
      return 'E_UNAVAILABLE';
  }
}

export interface ConnectOptions {
  /** Give up connecting after this long. Default 3000 ms. */
  connectTimeoutMs?: number;
  /** Default per-request timeout; 0 = none. Default 30000 ms. */
  requestTimeoutMs?: number;
  /** Longest line accepted from the daemon. Default MAX_FRAME_BYTES (+ slack for records). */
  maxFrameBytes?: number;
}

export interface CallOptions {
  /** Overrides the connection's default; 0 = wait forever. */
  timeoutMs?: number;
}

interface Pending {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

interface WireMessage {
  id?: number | string | null;
  method?: unknown;
  params?: unknown;
  result?: unknown;
  error?: { code?: unknown; message?: unknown; data?: unknown };
}

export class RpcClient {
  readonly socketPath: string;
  private readonly sock: net.Socket;
  private readonly requestTimeoutMs: number;
  private readonly maxFrameBytes: number;
  private readonly pending = new Map<number, Pending>();
  private readonly eventListeners = new Set<(e: RpcEvent) => void>();
  private readonly droppedListeners = new Set<(dropped: number) => void>();
  private readonly closeListeners = new Set<(err?: Error) => void>();
  private nextId = 1;
  private readonly lines: LineSplitter;
  /** Why the connection ended, once known; errors are built lazily (an Error costs ms at start-up). */
  private closedWith: Error | undefined;
  private closeDetail: string | undefined;
  private isClosed = false;
  private closedByUs = false;

  private constructor(socketPath: string, sock: net.Socket, opts: ConnectOptions) {
    this.socketPath = socketPath;
    this.sock = sock;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    // Replies carry records (and a sweep report lists paths); the daemon caps
    // what it reads at MAX_FRAME_BYTES, we accept generous replies.
    this.maxFrameBytes = opts.maxFrameBytes ?? MAX_FRAME_BYTES * 64;
    this.lines = new LineSplitter(this.maxFrameBytes);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (e: Error) => {
      this.closeDetail ??= (e as NodeJS.ErrnoException).code ?? e.message;
    });
    sock.on('close', () => this.handleClose());
  }

  /** Connect to the daemon; rejects with DaemonUnreachableError. */
  static connect(socketPath: string, opts: ConnectOptions = {}): Promise<RpcClient> {
    const connectTimeoutMs = opts.connectTimeoutMs ?? 3000;
    return new Promise((resolve, reject) => {
      const sock = net.connect(socketPath);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new DaemonUnreachableError(socketPath, 'ETIMEDOUT'));
      }, connectTimeoutMs);
      const onError = (e: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        sock.destroy();
        reject(new DaemonUnreachableError(socketPath, e.code ?? 'EIO', e));
      };
      sock.once('error', onError);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeListener('error', onError);
        resolve(new RpcClient(socketPath, sock, opts));
      });
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Call a method and resolve with its result; rejects with RpcReplyError, RequestTimeoutError or ConnectionLostError. */
  call<M extends ClientMethodName>(method: M, params: ClientMethods[M]['params'], opts: CallOptions = {}): Promise<ClientMethods[M]['result']> {
    return new Promise((resolve, reject) => {
      if (this.isClosed) return reject(this.closeError());
      const id = this.nextId++;
      const p: Pending = { method, resolve: resolve as (v: unknown) => void, reject };
      const ms = opts.timeoutMs ?? this.requestTimeoutMs;
      if (ms > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new RequestTimeoutError(this.socketPath, method, ms));
        }, ms);
      }
      this.pending.set(id, p);
      this.sock.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    });
  }

  /** Listen to pushed events (after `subscribe`). Returns an unsubscribe function. */
  onEvent(fn: (e: RpcEvent) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  /** Told how many events the daemon dropped because this client fell behind (events.dropped). */
  onDropped(fn: (dropped: number) => void): () => void {
    this.droppedListeners.add(fn);
    return () => this.droppedListeners.delete(fn);
  }

  /** Called once when the connection closes; `err` says why when it was not our doing. */
  onClose(fn: (err?: Error) => void): () => void {
    if (this.isClosed) {
      queueMicrotask(() => fn(this.closedByUs ? undefined : this.closeError()));
      return () => undefined;
    }
    this.closeListeners.add(fn);
    return () => this.closeListeners.delete(fn);
  }

  /** Drop the connection; pending requests fail with ConnectionLostError. */
  close(): void {
    if (this.isClosed) return;
    this.closedByUs = true;
    this.closeDetail ??= 'closed by the client';
    this.sock.destroy();
  }

  private onData(chunk: Buffer): void {
    const r = this.lines.push(chunk, (line) => {
      this.onLine(line);
      return !(this.isClosed || this.sock.destroyed);
    });
    if (r.kind === 'too-long') this.fail(new ProtocolError(`the daemon sent a line longer than ${this.maxFrameBytes} bytes`));
  }

  private onLine(line: Buffer): void {
    const text = line.toString('utf8').trim();
    if (text === '') return;
    let msg: WireMessage;
    try {
      msg = JSON.parse(text) as WireMessage;
    } catch {
      this.fail(new ProtocolError(`the daemon sent a line that is not JSON: ${text.slice(0, 80)}`));
      return;
    }
    if (msg === null || typeof msg !== 'object') return;
    if (typeof msg.method === 'string') {
      // A notification (no id). Requests from the server are not part of the protocol; ignore them.
      if (msg.method === EVENT_METHOD && (msg.id === undefined || msg.id === null)) {
        for (const fn of [...this.eventListeners]) fn(msg.params as RpcEvent);
      } else if (msg.method === EVENTS_DROPPED_METHOD) {
        const n = Number((msg.params as { dropped?: unknown } | undefined)?.dropped);
        if (Number.isFinite(n)) for (const fn of [...this.droppedListeners]) fn(n);
      }
      return;
    }
    if (typeof msg.id !== 'number') {
      // An error about a request the daemon could not even read (id null): no way to tell whose.
      if (msg.error) {
        const e = msg.error;
        this.fail(new RpcReplyError(Number(e.code), String(e.message ?? 'error'), e.data as RpcErrorData | undefined));
      }
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return; // timed out already
    this.pending.delete(msg.id);
    if (p.timer) clearTimeout(p.timer);
    if (msg.error) {
      const e = msg.error;
      p.reject(new RpcReplyError(Number(e.code), String(e.message ?? 'error'), e.data as RpcErrorData | undefined));
    } else {
      p.resolve(msg.result);
    }
  }

  /** Fail every pending request with `err` and drop the connection. */
  private fail(err: Error): void {
    this.closedWith = err;
    this.sock.destroy();
    this.handleClose();
  }

  private closeError(): Error {
    this.closedWith ??= new ConnectionLostError(this.socketPath, this.closeDetail);
    return this.closedWith;
  }

  private handleClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(this.closeError());
    }
    for (const fn of [...this.closeListeners]) fn(this.closedByUs ? undefined : this.closeError());
    this.closeListeners.clear();
  }
}
