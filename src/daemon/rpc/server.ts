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
 * - Requests on one connection run concurrently; replies carry their id.
 * - Nothing a client does can throw out of here: handler errors become
 *   error replies, writes to a closed socket are dropped, unexpected errors
 *   are logged as -32603.
 * - A client that does not read its replies, or has too many requests
 *   unanswered, stops being read from (backpressure) instead of growing our
 *   buffers without bound.
 */
import net from 'node:net';
import { JSONRPCClient, JSONRPCErrorException, JSONRPCServer, JSONRPCServerAndClient, type JSONRPCID, type JSONRPCRequest } from 'json-rpc-2.0';
import { isMediaCacheError, type ErrorCode } from '../../core/errors.js';
import type { Logger } from '../../core/util/logger.js';
import { EVENT_METHOD, MAX_FRAME_BYTES, RPC_ERRORS, type EventName, type RpcEvent } from '../../core/protocol/rpc.js';
import { bindSocket, unlinkSocket, type BindResult } from './socket-bind.js';
import { LineSplitter } from '../../core/protocol/ndjson.js';

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

export interface RpcServerOptions {
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

/** Progress events are dropped for a subscriber this far behind; anything more and it is cut off. */
const PROGRESS_DROP_BYTES = 1024 * 1024;
const SLOW_CONSUMER_BYTES = 64 * 1024 * 1024;

class Connection implements RpcConnection {
  closed = false;
  readonly subscriptions = new Set<EventName>();
  private readonly closeFns: Array<() => void> = [];
  private lines: LineSplitter | undefined;
  private discarding = false;
  /** Raw data read but not parsed yet because the connection is congested. */
  private held: Buffer[] = [];
  /** Requests dispatched on this connection and not answered yet. */
  private inflight = 0;
  readonly peer: JSONRPCServerAndClient<RpcConnection, void>;

  constructor(
    readonly id: number,
    readonly sock: net.Socket,
    private readonly owner: RpcServer,
  ) {
    this.peer = new JSONRPCServerAndClient(owner.makeServer(), new JSONRPCClient<void>((payload) => this.write(payload)), {
      errorListener: (msg, data) => owner.logger.debug(`rpc: ${msg}`, { conn: id, data: String(data) }),
    });
    sock.on('data', (b: Buffer) => this.onData(b));
    sock.on('error', (e) => owner.logger.debug('rpc: connection error', { conn: id, error: e.message }));
    sock.on('close', () => this.onClosed());
    sock.on('drain', () => this.release());
  }

  subscribe(events: readonly EventName[]): void {
    for (const e of events) this.subscriptions.add(e);
  }

  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.closeFns.push(fn);
  }

  /**
   * Write one message; silently dropped once the peer is gone. Messages of
   * one event-loop turn (a batch of job events) leave in one system call:
   * the socket is corked until the next tick.
   */
  write(msg: unknown): void {
    if (this.closed || this.sock.destroyed || !this.sock.writable) return;
    if (!this.corked) {
      this.corked = true;
      this.sock.cork();
      process.nextTick(this.uncork);
    }
    this.sock.write(JSON.stringify(msg) + '\n');
    if (this.congested()) this.sock.pause();
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.sock.uncork();
  };

  /**
   * Too many requests in flight, or too many reply bytes the client has not
   * read: stop parsing and reading until that clears (backpressure).
   */
  private congested(): boolean {
    return this.inflight >= this.owner.maxInflight || this.sock.writableLength > this.owner.highWaterBytes;
  }

  /** Parse what was held back and read again, as far as congestion allows. */
  private release(): void {
    if (this.discarding || this.closed) return;
    while (this.held.length && !this.congested()) this.consume(this.held.shift()!);
    if (!this.held.length && !this.congested()) this.sock.resume();
  }

  /** Push an event if subscribed; slow subscribers lose progress ticks, not results. */
  push(ev: RpcEvent): void {
    if (!this.subscriptions.has(ev.type)) return;
    const backlog = this.sock.writableLength;
    if (backlog > SLOW_CONSUMER_BYTES) {
      this.owner.logger.warn('rpc: subscriber is not reading its events; closing it', { conn: this.id, backlog });
      this.sock.destroy();
      return;
    }
    if (backlog > PROGRESS_DROP_BYTES && (ev.type === 'job.progress' || ev.type === 'sweep.progress')) return;
    this.peer.notify(EVENT_METHOD, ev as unknown as Record<string, unknown>);
  }

  private onData(b: Buffer): void {
    if (this.discarding) return;
    if (this.held.length || this.congested()) {
      this.held.push(b);
      this.sock.pause();
      return;
    }
    this.consume(b);
  }

  private consume(b: Buffer): void {
    this.lines ??= new LineSplitter(this.owner.maxFrameBytes);
    const r = this.lines.push(b, (line) => {
      this.handleLine(line);
      return !(this.closed || this.discarding || this.congested());
    });
    if (r.kind === 'too-long') return this.tooLarge();
    if (r.kind === 'stopped' && !this.closed && !this.discarding) {
      // Congested: keep the rest (in order, ahead of anything read later) for release().
      if (r.rest) this.held.unshift(r.rest);
      this.sock.pause();
    }
  }

  private tooLarge(): void {
    this.discarding = true;
    this.held = [];
    this.lines?.reset();
    this.owner.logger.warn('rpc: frame too large; closing connection', { conn: this.id, limit: this.owner.maxFrameBytes });
    this.write({
      jsonrpc: '2.0',
      id: null,
      error: { code: RPC_ERRORS.FRAME_TOO_LARGE, message: `message longer than ${this.owner.maxFrameBytes} bytes`, data: { code: 'E_BAD_REQUEST' } },
    });
    // Half-close after the reply; keep reading (and dropping) so the client's
    // write completes and it sees our reply, then cut it off if it lingers.
    this.sock.resume();
    this.sock.end();
    setTimeout(() => this.sock.destroy(), 5000).unref();
  }

  private handleLine(buf: Buffer): void {
    const text = buf.toString('utf8').replace(/\r$/, '');
    if (text.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      this.write({ jsonrpc: '2.0', id: null, error: { code: RPC_ERRORS.PARSE, message: `Parse error: ${(e as Error).message}`, data: { code: 'E_BAD_REQUEST' } } });
      return;
    }
    this.inflight++;
    this.peer
      .receiveAndSend(msg, this, undefined)
      .catch(() => {
        // Valid JSON that is not a JSON-RPC message: -32600 (with its id when it has one).
        const id = (msg as { id?: unknown } | null)?.id;
        const okId = typeof id === 'string' || typeof id === 'number' ? id : null;
        this.write({ jsonrpc: '2.0', id: okId, error: { code: RPC_ERRORS.INVALID_REQUEST, message: 'Invalid Request', data: { code: 'E_BAD_REQUEST' } } });
      })
      .finally(() => {
        this.inflight--;
        this.release();
      });
  }

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.lines?.reset();
    this.peer.rejectAllPendingRequests('connection closed');
    this.owner.forget(this);
    for (const fn of this.closeFns.splice(0)) {
      try {
        fn();
      } catch (e) {
        this.owner.logger.error('rpc: close callback failed', { error: e as Error });
      }
    }
  }
}

export class RpcServer {
  readonly logger: Logger;
  readonly maxFrameBytes: number;
  readonly highWaterBytes: number;
  readonly maxInflight: number;
  readonly socketPath: string;
  private readonly handlers: Readonly<Record<string, RpcHandler>>;
  private readonly net: net.Server;
  private readonly conns = new Set<Connection>();
  private nextId = 1;
  private bound: BindResult | undefined;
  private closing: Promise<void> | undefined;
  private readonly env: Readonly<Record<string, string | undefined>>;

  constructor(o: RpcServerOptions) {
    this.logger = o.logger;
    this.socketPath = o.socketPath;
    this.handlers = o.handlers;
    this.maxFrameBytes = o.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.highWaterBytes = o.highWaterBytes ?? 8 * 1024 * 1024;
    this.maxInflight = o.maxInflight ?? 1024;
    this.env = o.env ?? process.env;
    this.net = net.createServer((sock) => this.accept(sock));
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Bind the socket (see socket-bind.ts); throws StartupError when another daemon owns it. */
  async listen(): Promise<BindResult> {
    this.bound = await bindSocket(this.net, this.socketPath, this.env);
    // Bind errors are bindSocket's to handle; after that, log and keep going.
    this.net.on('error', (e) => this.logger.error('rpc: server error', { error: e }));
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

  private accept(sock: net.Socket): void {
    const c = new Connection(this.nextId++, sock, this);
    this.conns.add(c);
    this.logger.debug('rpc: connection', { conn: c.id });
  }

  /** @internal One JSONRPCServer per connection, sharing the handler table. */
  makeServer(): JSONRPCServer<RpcConnection> {
    const s = new JSONRPCServer<RpcConnection>({
      errorListener: (msg, err) => {
        if (err instanceof InvalidParamsError || isMediaCacheError(err) || err instanceof JSONRPCErrorException) return;
        this.logger.error(`rpc: ${msg}`, { error: err instanceof Error ? err : String(err) });
      },
    });
    for (const [name, fn] of Object.entries(this.handlers)) {
      s.addMethod(name, (params, conn) => fn(params === undefined ? {} : params, conn));
    }
    s.handleMethodNotFound = async <P>(req: JSONRPCRequest, _p: P) =>
      req.id === undefined ? null : errorResponse(req.id, RPC_ERRORS.METHOD_NOT_FOUND, `Method not found: ${String(req.method)}`, { code: 'E_BAD_REQUEST' });
    s.mapErrorToJSONRPCErrorResponse = (id: JSONRPCID, err: unknown) => {
      if (err instanceof InvalidParamsError) return errorResponse(id, RPC_ERRORS.INVALID_PARAMS, err.message, { code: 'E_BAD_REQUEST', message: err.message });
      if (isMediaCacheError(err)) return errorResponse(id, RPC_ERRORS.APP, err.message, err.toJSON());
      if (err instanceof JSONRPCErrorException) return errorResponse(id, err.code, err.message, err.data);
      const message = err instanceof Error ? err.message : String(err);
      return errorResponse(id, RPC_ERRORS.INTERNAL, `internal error: ${message}`, { code: 'E_UNAVAILABLE', message });
    };
    return s;
  }
}

function errorResponse(id: JSONRPCID, code: number, message: string, data: unknown) {
  return { jsonrpc: '2.0' as const, id, error: { code, message, data } };
}
