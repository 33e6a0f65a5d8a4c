/**
 * One client connection of the RPC server: framing, congestion, event
 * delivery to a subscriber, and the idle/stall clock (the invariants are
 * listed in server.ts).
 */
import type net from 'node:net';
import type { JSONRPCServer } from 'json-rpc-2.0';
import type { Logger } from '../../core/util/logger.js';
import { EVENT_METHOD, EVENTS_DROPPED_METHOD, RPC_ERRORS, type EventName, type RpcEvent } from '../../core/protocol/rpc.js';
import { LineSplitter } from '../../core/protocol/ndjson.js';
import { checkRequest, errorReply, type ErrorReply } from './request.js';
import { PROGRESS_DROP_BYTES } from './limits.js';
import type { RpcConnection } from './server.js';

/** Queued event text written at once when it reaches this many characters (see queueEvent). */
const EVENT_BATCH_CHARS = 16 * 1024;
/** Longest an event waits to be batched with the next ones (well under what a person notices on a progress bar). */
const EVENT_BATCH_MS = 10;

/** What a connection needs from its server. */
export interface ConnectionOwner {
  readonly logger: Logger;
  readonly maxFrameBytes: number;
  readonly highWaterBytes: number;
  readonly maxInflight: number;
  readonly subscriberBacklogBytes: number;
  readonly rpc: JSONRPCServer<RpcConnection>;
  overBudget(): boolean;
  forget(c: Connection): void;
}

type Reply = object | null;

export class Connection implements RpcConnection {
  closed = false;
  readonly subscriptions = new Set<EventName>();
  private readonly closeFns: Array<() => void> = [];
  private lines: LineSplitter | undefined;
  private discarding = false;
  /** Raw data read but not parsed yet because the connection is congested. */
  private held: Buffer[] = [];
  /** Requests dispatched on this connection and not answered yet. */
  inflight = 0;
  /** Events not sent because this subscriber fell behind; reported once it has caught up. */
  private dropped = 0;
  /** Last time a request arrived (idle connections are closed). */
  lastReceivedAt = Date.now();
  /** Last time output was flushed to the peer, or output started from an empty buffer (stall clock). */
  lastFlushAt = Date.now();
  private readonly flushed = (): void => {
    this.lastFlushAt = Date.now();
  };

  constructor(
    readonly id: number,
    readonly sock: net.Socket,
    private readonly owner: ConnectionOwner,
  ) {
    sock.on('data', (b: Buffer) => this.onData(b));
    sock.on('error', (e) => owner.logger.debug('rpc: connection error', { conn: id, error: e.message }));
    sock.on('close', () => this.onClosed());
    sock.on('drain', () => this.onDrain());
  }

  subscribe(events: readonly EventName[]): void {
    for (const e of events) this.subscriptions.add(e);
  }

  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.closeFns.push(fn);
  }

  /** Write one message (after the events queued before it); silently dropped once the peer is gone. */
  write(msg: unknown): void {
    if (this.closed || this.sock.destroyed || !this.sock.writable) return;
    this.flushEvents();
    this.send(JSON.stringify(msg) + '\n');
  }

  private send(text: string): void {
    if (this.sock.writableLength === 0) this.lastFlushAt = Date.now();
    this.sock.write(text, this.flushed);
    if (this.congested()) this.sock.pause();
  }

  /**
   * Events pushed within EVENT_BATCH_MS of each other (finished jobs,
   * progress ticks) leave in one socket write, not one system call each;
   * at most EVENT_BATCH_CHARS wait, so a burst still reaches the
   * socket (and its kernel buffer) as it happens, and a subscriber that
   * does not read shows as a growing socket buffer, as without batching.
   * Queued events count in the backlog.
   */
  private events: string[] = [];
  private eventChars = 0;
  private eventsTimer: NodeJS.Timeout | undefined;

  private queueEvent(line: string): void {
    this.events.push(line);
    this.eventChars += line.length;
    if (this.eventChars >= EVENT_BATCH_CHARS) return this.flushEvents();
    this.eventsTimer ??= setTimeout(this.flushEvents, EVENT_BATCH_MS);
  }

  private readonly flushEvents = (): void => {
    clearTimeout(this.eventsTimer);
    this.eventsTimer = undefined;
    if (this.events.length === 0) return;
    const text = this.events.length === 1 ? this.events[0]! : this.events.join('');
    this.events = [];
    this.eventChars = 0;
    if (this.closed || this.sock.destroyed || !this.sock.writable) return;
    this.send(text);
  };

  /** Output not yet read by the peer: the socket's buffer and the events queued for it. */
  backlog(): number {
    return this.sock.writableLength + this.eventChars;
  }

  /**
   * Too many requests in flight, too many reply bytes the client has not
   * read, or more than its socket's own buffer while all connections
   * together are over budget: stop parsing and reading until that clears.
   * (Only a buffer past the socket's high-water mark counts against the
   * global budget: exactly then 'drain' is sure to fire and release it.)
   */
  private congested(): boolean {
    const len = this.sock.writableLength;
    if (this.inflight >= this.owner.maxInflight || len > this.owner.highWaterBytes) return true;
    return len > this.sock.writableHighWaterMark && this.owner.overBudget();
  }

  private onDrain(): void {
    if (this.dropped > 0 && !this.closed) {
      const dropped = this.dropped;
      this.dropped = 0;
      this.owner.logger.info('rpc: subscriber caught up', { conn: this.id, dropped });
      this.write({ jsonrpc: '2.0', method: EVENTS_DROPPED_METHOD, params: { dropped } });
    }
    this.release();
  }

  /** Parse what was held back and read again, as far as congestion allows. */
  private release(): void {
    if (this.discarding || this.closed) return;
    while (this.held.length && !this.congested()) this.consume(this.held.shift()!);
    if (!this.held.length && !this.congested()) this.sock.resume();
  }

  /**
   * Push an event if subscribed. A subscriber past its backlog limit (or
   * with a full socket buffer while the server is over budget) gets no more
   * events until its buffer has drained, then one `events.dropped` notice
   * with the count; progress ticks are dropped earlier and silently (the
   * next tick supersedes them).
   */
  push(ev: RpcEvent): void {
    if (!this.subscriptions.has(ev.type) || this.closed) return;
    const backlog = this.backlog();
    if (this.dropped > 0 || backlog > this.owner.subscriberBacklogBytes || (backlog > this.sock.writableHighWaterMark && this.owner.overBudget())) {
      if (this.dropped === 0) this.owner.logger.warn('rpc: subscriber is not reading its events; dropping them until it catches up', { conn: this.id, backlog });
      this.dropped++;
      return;
    }
    if (backlog > PROGRESS_DROP_BYTES && (ev.type === 'job.progress' || ev.type === 'sweep.progress')) return;
    this.queueEvent(JSON.stringify({ jsonrpc: '2.0', method: EVENT_METHOD, params: ev }) + '\n');
  }

  /**
   * Why this connection should be closed now, if at all: 'stalled' when it
   * has had output waiting and none of it flushed for `idleMs` (it stopped
   * reading), 'idle' when it has nothing in flight, no subscription and sent
   * nothing for `idleMs`. A subscriber that reads is never idle.
   */
  expired(now: number, idleMs: number): 'idle' | 'stalled' | undefined {
    if (this.backlog() > 0) return now - this.lastFlushAt > idleMs ? 'stalled' : undefined;
    if (this.inflight === 0 && this.subscriptions.size === 0 && now - this.lastReceivedAt > idleMs) return 'idle';
    return undefined;
  }

  private onData(b: Buffer): void {
    this.lastReceivedAt = Date.now();
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
    this.write(errorReply(null, RPC_ERRORS.FRAME_TOO_LARGE, `message longer than ${this.owner.maxFrameBytes} bytes`, { code: 'E_BAD_REQUEST' }));
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
      this.write(errorReply(null, RPC_ERRORS.PARSE, `Parse error: ${(e as Error).message}`, { code: 'E_BAD_REQUEST' }));
      return;
    }
    if (Array.isArray(msg)) {
      if (msg.length === 0) {
        this.write(errorReply(null, RPC_ERRORS.INVALID_REQUEST, 'Invalid Request: empty batch', { code: 'E_BAD_REQUEST', message: 'empty batch' }));
        return;
      }
      // A batch is answered with one array of the replies owed (none for notifications only).
      this.track(msg.length, Promise.all(msg.map((m) => this.receive(m))).then((rs) => {
        const out = rs.filter((r): r is object => r !== null);
        if (out.length) this.write(out);
      }));
      return;
    }
    this.track(1, this.receive(msg).then((r) => {
      if (r) this.write(r);
    }));
  }

  private track(n: number, p: Promise<void>): void {
    this.inflight += n;
    void p.finally(() => {
      this.inflight -= n;
      this.release();
    });
  }

  /** One message → its reply (null for a notification). Never rejects. */
  private receive(m: unknown): Promise<Reply> {
    const c = checkRequest(m);
    if ('reply' in c) return Promise.resolve(c.reply);
    return Promise.resolve(this.owner.rpc.receive(c.request, this)).then(
      (r) => r ?? null,
      (e: unknown): ErrorReply => {
        this.owner.logger.error('rpc: request failed unexpectedly', { conn: this.id, error: e instanceof Error ? e : String(e) });
        return errorReply(c.request.id ?? null, RPC_ERRORS.INTERNAL, 'internal error', { code: 'E_INTERNAL' });
      },
    );
  }

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.lines?.reset();
    this.held = [];
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

