/**
 * JSON-RPC 2.0 over a local stream socket, one message per line (NDJSON).
 *
 * Invariants:
 * - Framing is on Buffers, never strings, so a multi-byte character or the
 *   "\n" split across packets is reassembled correctly; one packet may carry
 *   many messages.
 * - A frame longer than MAX_FRAME_BYTES is never buffered whole: once the
 *   pending bytes pass the limit we answer FRAME_TOO_LARGE, stop parsing,
 *   discard whatever else arrives and close the connection.
 * - Every message is checked (request.ts) before a handler runs: bad ids,
 *   empty batches and non-requests get -32600.
 * - Requests on one connection run concurrently; replies carry their id.
 * - Nothing a client does can throw out of here: handler errors become
 *   error replies, writes to a closed socket are dropped, unexpected errors
 *   are logged and answered -32603 with data.code E_INTERNAL.
 * - Memory is bounded whatever clients do (limits.ts): a client that does
 *   not read its replies, or has too many requests unanswered, stops being
 *   read from; so does every congested one while all connections together
 *   buffer more than maxBufferedBytes; a subscriber that falls behind loses
 *   events (told how many by an `events.dropped` notice once it catches up)
 *   rather than growing its buffer; at most maxConnections are served; idle
 *   connections and ones that stopped reading are closed after idleTimeoutMs.
 */
import net from 'node:net';
import { JSONRPCErrorException, JSONRPCServer, type JSONRPCID, type JSONRPCRequest } from 'json-rpc-2.0';
import { isMediaCacheError, type ErrorCode } from '../../core/errors.js';
import type { Logger } from '../../core/util/logger.js';
import { MAX_FRAME_BYTES, RPC_ERRORS, type EventName, type RpcEvent } from '../../core/protocol/rpc.js';
import { bindSocket, unlinkSocket, type BindResult } from './socket-bind.js';
import { errorReply } from './request.js';
import { LIMIT_DEFAULTS, type ConnectionLimits } from './limits.js';
import { Connection } from './connection.js';

/** Thrown by param validators: becomes -32602 with data.code E_BAD_REQUEST. */
export class InvalidParamsError extends Error {
  readonly code: ErrorCode = 'E_BAD_REQUEST';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidParamsError';
  }
}

/** What a handler knows about the connection that called it. */
export interface RpcConnection {
  readonly id: number;
  readonly closed: boolean;
  /** Events this connection subscribed to (empty: none). */
  readonly subscriptions: ReadonlySet<EventName>;
  subscribe(events: readonly EventName[]): void;
  /** Runs once when the connection closes (e.g. to stop waiting for it). */
  onClose(fn: () => void): void;
}

export type RpcHandler = (params: unknown, conn: RpcConnection) => Promise<unknown>;

export interface RpcServerOptions extends ConnectionLimits {
  socketPath: string;
  handlers: Readonly<Record<string, RpcHandler>>;
  logger: Logger;
  maxFrameBytes?: number;
  /** Pause reading a connection whose unsent output exceeds this (default 8 MiB). */
  highWaterBytes?: number;
  /** Pause reading a connection with this many requests unanswered (default 1024). */
  maxInflight?: number;
  /** For systemd socket activation (LISTEN_PID/LISTEN_FDS). */
  env?: Readonly<Record<string, string | undefined>>;
}

export class RpcServer {
  readonly logger: Logger;
  readonly maxFrameBytes: number;
  readonly highWaterBytes: number;
  readonly maxInflight: number;
  readonly maxConnections: number;
  readonly maxBufferedBytes: number;
  readonly subscriberBacklogBytes: number;
  readonly idleTimeoutMs: number;
  readonly socketPath: string;
  /** @internal The one JSON-RPC dispatcher; the connection travels as its server params. */
  readonly rpc: JSONRPCServer<RpcConnection>;
  private readonly net: net.Server;
  private readonly conns = new Set<Connection>();
  private nextId = 1;
  private bound: BindResult | undefined;
  private closing: Promise<void> | undefined;
  private readonly env: Readonly<Record<string, string | undefined>>;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastRefusalLog = 0;
  private refusedSinceLog = 0;

  constructor(o: RpcServerOptions) {
    this.logger = o.logger;
    this.socketPath = o.socketPath;
    this.maxFrameBytes = o.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.highWaterBytes = o.highWaterBytes ?? 8 * 1024 * 1024;
    this.maxInflight = o.maxInflight ?? 1024;
    this.maxConnections = o.maxConnections ?? LIMIT_DEFAULTS.maxConnections;
    this.maxBufferedBytes = o.maxBufferedBytes ?? LIMIT_DEFAULTS.maxBufferedBytes;
    this.subscriberBacklogBytes = o.subscriberBacklogBytes ?? LIMIT_DEFAULTS.subscriberBacklogBytes;
    this.idleTimeoutMs = o.idleTimeoutMs ?? LIMIT_DEFAULTS.idleTimeoutMs;
    this.env = o.env ?? process.env;
    this.rpc = this.makeServer(o.handlers);
    this.net = net.createServer((sock) => this.accept(sock));
    // Backstop under our own limit: connections past it are closed by the kernel-side accept
    // path without even a reply (ours above get one), so a flood cannot use up descriptors.
    this.net.maxConnections = this.maxConnections + REFUSAL_SLACK;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Bytes written to connections and not yet taken by their peers, all together. */
  bufferedBytes(): number {
    let n = 0;
    for (const c of this.conns) n += c.backlog();
    return n;
  }

  /** @internal */
  overBudget(): boolean {
    return this.bufferedBytes() > this.maxBufferedBytes;
  }

  /** Bind the socket (see socket-bind.ts); throws StartupError when another daemon owns it. */
  async listen(): Promise<BindResult> {
    this.bound = await bindSocket(this.net, this.socketPath, this.env);
    // Bind errors are bindSocket's to handle; after that, log and keep going.
    this.net.on('error', (e) => this.logger.error('rpc: server error', { error: e }));
    if (this.idleTimeoutMs > 0) {
      const tick = Math.max(20, Math.min(Math.floor(this.idleTimeoutMs / 4), 15_000));
      this.idleTimer = setInterval(() => this.closeExpired(), tick);
      this.idleTimer.unref();
    }
    return this.bound;
  }

  /** Send an event to every connection subscribed to its type. */
  broadcast(ev: RpcEvent): void {
    for (const c of this.conns) c.push(ev);
  }

  /**
   * Stop accepting connections; existing ones keep being served. (net's
   * close callback waits for every connection to end, so it is awaited only
   * in close(), after they were destroyed.)
   */
  stopAccepting(): void {
    if (this.closing) return;
    this.closing = new Promise((resolve) => this.net.close(() => resolve()));
  }

  /** Stop accepting, close every connection, remove our socket file. */
  async close(): Promise<void> {
    this.stopAccepting();
    clearInterval(this.idleTimer);
    for (const c of this.conns) c.sock.destroy();
    await this.closing;
    if (this.bound && !this.bound.activated) unlinkSocket(this.socketPath);
  }

  /** Remove our socket file at once (forced exit); activated sockets are left alone. */
  unlinkNow(): void {
    if (this.bound && !this.bound.activated) unlinkSocket(this.socketPath);
  }

  /** @internal */
  forget(c: Connection): void {
    this.conns.delete(c);
  }

  private closeExpired(): void {
    const now = Date.now();
    for (const c of this.conns) {
      const why = c.expired(now, this.idleTimeoutMs);
      if (!why) continue;
      this.logger.debug(why === 'idle' ? 'rpc: closing an idle connection' : 'rpc: closing a connection that stopped reading', { conn: c.id, idleMs: this.idleTimeoutMs });
      // A stalled peer will not read a goodbye; an idle one gets a clean end.
      if (why === 'stalled') c.sock.destroy();
      else {
        c.sock.end();
        setTimeout(() => c.sock.destroy(), 1000).unref();
      }
      this.conns.delete(c);
    }
  }

  private accept(sock: net.Socket): void {
    if (this.conns.size >= this.maxConnections) return this.refuse(sock);
    const c = new Connection(this.nextId++, sock, this);
    this.conns.add(c);
    this.logger.debug('rpc: connection', { conn: c.id });
  }

  /** Over the connection limit: one error line, then the connection is closed. */
  private refuse(sock: net.Socket): void {
    sock.on('error', () => undefined);
    sock.resume(); // read and drop whatever it sends
    sock.end(JSON.stringify(errorReply(null, RPC_ERRORS.APP, `too many connections (limit ${this.maxConnections}); try again later`, { code: 'E_UNAVAILABLE' })) + '\n');
    setTimeout(() => sock.destroy(), 1000).unref();
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusalLog > 60_000) {
      this.logger.warn('rpc: connection limit reached; refusing new connections', { limit: this.maxConnections, refused: this.refusedSinceLog });
      this.lastRefusalLog = now;
      this.refusedSinceLog = 0;
    }
  }

  private makeServer(handlers: Readonly<Record<string, RpcHandler>>): JSONRPCServer<RpcConnection> {
    const s = new JSONRPCServer<RpcConnection>({
      errorListener: (msg, err) => {
        if (err instanceof InvalidParamsError || isMediaCacheError(err) || err instanceof JSONRPCErrorException) return;
        this.logger.error(`rpc: ${msg}`, { error: err instanceof Error ? err : String(err) });
      },
    });
    for (const [name, fn] of Object.entries(handlers)) {
      s.addMethod(name, (params, conn) => fn(params === undefined ? {} : params, conn));
    }
    s.handleMethodNotFound = async <P>(req: JSONRPCRequest, _p: P) =>
      req.id === undefined ? null : errorReply(req.id, RPC_ERRORS.METHOD_NOT_FOUND, `Method not found: ${String(req.method)}`, { code: 'E_BAD_REQUEST' });
    s.mapErrorToJSONRPCErrorResponse = (id: JSONRPCID, err: unknown) => {
      if (err instanceof InvalidParamsError) return errorReply(id, RPC_ERRORS.INVALID_PARAMS, err.message, { code: 'E_BAD_REQUEST', message: err.message });
      if (isMediaCacheError(err)) return errorReply(id, RPC_ERRORS.APP, err.message, err.toJSON());
      if (err instanceof JSONRPCErrorException) return errorReply(id, err.code, err.message, err.data);
      // Anything else is a fault of ours (a bug), never a reason to try again later.
      const message = err instanceof Error ? err.message : String(err);
      return errorReply(id, RPC_ERRORS.INTERNAL, `internal error: ${message}`, { code: 'E_INTERNAL', message });
    };
    return s;
  }
}

/** Connections the kernel may hand us past maxConnections before net itself drops them. */
const REFUSAL_SLACK = 16;
