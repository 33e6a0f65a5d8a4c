/**
 * The webhook outbox: deliveries not yet acknowledged by a 2xx, kept in
 * `<indexDir>/outbox/outbox.jsonl` so they survive restarts and kill -9.
 *
 * The file is a journal of JSON lines: `{"a":{...entry}}` adds a delivery,
 * `{"d":"<key>"}` marks one delivered. Writes are batched: whatever was
 * added or acknowledged while one append (+ fdatasync, DurableAppendFile)
 * ran goes out in the next, so a burst of events costs one sync per batch.
 *
 * Invariants:
 * - add() resolves only once its entries are on stable storage; whenDurable()
 *   resolves once every add() made before the call is (or has failed).
 * - An acknowledgement may be lost in a crash (then the delivery is repeated:
 *   at least once, never at most once); an add never is once acknowledged.
 * - Only whole lines count: at open, reading stops at the first line that is
 *   cut or does not parse (the tail of an append a crash interrupted, never
 *   acknowledged), and the journal is rewritten holding just the pending
 *   entries (temp file, fsync, rename, dir fsync). The same rewrite
 *   compacts it at run time once delivered lines dominate.
 * One writer per index dir (the daemon holds the cache lock).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { DurableAppendFile, TEMP_PREFIX, writeFileDurable } from '../../core/util/durable-file.js';
import type { Logger } from '../../core/util/logger.js';
import type { HookEvent } from './events.js';

export interface OutboxEntry {
  /** `<event id> <target>`: one delivery of one event to one URL. */
  key: string;
  target: string;
  event: HookEvent;
  /** When it was added (ms since the epoch). */
  addedAt: number;
}

export interface OutboxOptions {
  logger: Logger;
  /** Refuse new entries beyond this many pending (default 100,000), logged. */
  maxPending?: number;
  /** Compact once the journal is this large and mostly delivered lines (default 4 MiB). */
  compactBytes?: number;
  now?: () => number;
}

export const OUTBOX_FILE = 'outbox.jsonl';

/** With nothing pending, a journal this large is replaced by an empty one. */
const EMPTY_COMPACT_BYTES = 64 * 1024;
const RETRY_WRITE_MS = 1000;

type Line = { a: OutboxEntry } | { d: string };

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class Outbox {
  readonly dir: string;
  private readonly file: string;
  private readonly o: Required<OutboxOptions>;
  private readonly map = new Map<string, OutboxEntry>();
  private journal: DurableAppendFile;
  private lines: string[] = [];
  private waiters: Waiter[] = [];
  private writing: Promise<void> | undefined;
  /** Lines in the journal that mark a delivery done (compaction trigger). */
  private doneLines = 0;
  private refused = 0;
  private retryTimer: NodeJS.Timeout | undefined;

  private constructor(dir: string, journal: DurableAppendFile, o: OutboxOptions) {
    this.dir = dir;
    this.file = path.join(dir, OUTBOX_FILE);
    this.journal = journal;
    this.o = { maxPending: 100_000, compactBytes: 4 * 1024 * 1024, now: Date.now, ...o };
  }

  static async open(dir: string, o: OutboxOptions): Promise<Outbox> {
    await fs.mkdir(dir, { recursive: true });
    const file = path.join(dir, OUTBOX_FILE);
    for (const n of await fs.readdir(dir)) if (n.startsWith(TEMP_PREFIX)) await fs.unlink(path.join(dir, n)).catch(() => undefined);
    let buf: Buffer | undefined;
    try {
      buf = await fs.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const ob = new Outbox(dir, new DurableAppendFile(file), o);
    if (buf) {
      const { valid, done } = ob.replay(buf);
      if (valid < buf.length) o.logger.warn('outbox: cut a partial last line (a crash during a write)', { file, bytes: buf.length - valid });
      // Start from a clean file: only the pending entries, no torn tail.
      if (valid < buf.length || done > 0) await ob.rewrite();
      else ob.journal = new DurableAppendFile(file, { size: buf.length, validLength: buf.length });
    }
    return ob;
  }

  /** Apply the journal's whole, parseable lines; returns the byte length they cover. */
  private replay(buf: Buffer): { valid: number; done: number } {
    let pos = 0;
    let done = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, pos);
      if (nl < 0) break;
      let line: Line;
      try {
        line = JSON.parse(buf.subarray(pos, nl).toString('utf8')) as Line;
      } catch {
        break;
      }
      if ('a' in line && line.a && typeof line.a.key === 'string' && line.a.event) this.map.set(line.a.key, line.a);
      else if ('d' in line && typeof line.d === 'string') {
        this.map.delete(line.d);
        done++;
      } else break;
      pos = nl + 1;
    }
    return { valid: pos, done };
  }

  get size(): number {
    return this.map.size;
  }

  /** Pending entries, oldest first. */
  entries(): OutboxEntry[] {
    return [...this.map.values()];
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  /**
   * Queue one delivery of `event` per target; durable once resolved. The
   * returned entries are pending at once (in memory) so delivery need not
   * wait for the disk; they are dropped only when the outbox is full.
   */
  add(event: HookEvent, targets: readonly string[]): { entries: OutboxEntry[]; durable: Promise<void> } {
    const entries: OutboxEntry[] = [];
    for (const target of targets) {
      const key = `${event.id} ${target}`;
      if (this.map.has(key)) continue;
      if (this.map.size >= this.o.maxPending) {
        this.refused++;
        this.o.logger.error('outbox full: delivery not kept', { event: event.type, id: event.id, target, pending: this.map.size, refusedSoFar: this.refused });
        continue;
      }
      const e: OutboxEntry = { key, target, event, addedAt: this.o.now() };
      this.map.set(key, e);
      this.lines.push(JSON.stringify({ a: e }) + '\n');
      entries.push(e);
    }
    const durable = entries.length ? new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject })) : Promise.resolve();
    if (entries.length) this.pump();
    return { entries, durable };
  }

  /** Mark delivered. Written with the next batch; its loss only repeats a delivery. */
  ack(key: string): void {
    if (!this.map.delete(key)) return;
    this.lines.push(JSON.stringify({ d: key }) + '\n');
    this.pump();
  }

  /** Resolves once everything added so far is durable (or its write failed). Never rejects. */
  whenDurable(): Promise<void> {
    // Nothing queued: the running loop (if any) holds the last adds.
    if (this.lines.length === 0) return this.writing ? this.writing.then(() => undefined) : Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push({ resolve, reject: () => resolve() }));
  }

  private pump(): void {
    if (this.writing || this.retryTimer) return;
    this.writing = this.writeLoop().then((ok) => {
      this.writing = undefined;
      if (!ok) {
        // A failing disk (ENOSPC, EIO): try again later, not in a tight loop.
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.pump();
        }, RETRY_WRITE_MS);
        this.retryTimer.unref();
      } else if (this.lines.length) this.pump();
    });
  }

  /** Write queued lines until none is left; false when a write failed. */
  private async writeLoop(): Promise<boolean> {
    while (this.lines.length) {
      const batch = this.lines;
      const waiters = this.waiters;
      this.lines = [];
      this.waiters = [];
      try {
        const doneInBatch = batch.reduce((n, l) => n + (l.startsWith('{"d"') ? 1 : 0), 0);
        const bytes = this.journal.bytes + batch.reduce((n, l) => n + l.length, 0);
        // The map already reflects every line of the batch, so a rewrite from
        // it stands for the batch too.
        const compact = this.map.size === 0 ? bytes >= EMPTY_COMPACT_BYTES : bytes >= this.o.compactBytes && this.doneLines + doneInBatch > this.map.size;
        if (compact) {
          await this.rewrite();
        } else {
          const buf = Buffer.from(batch.join(''), 'utf8');
          await this.journal.append(() => buf);
          this.doneLines += doneInBatch;
        }
        for (const w of waiters) w.resolve();
      } catch (e) {
        this.o.logger.error('outbox: write failed; deliveries stay pending in memory only until the next write succeeds', { error: String(e) });
        // Retry the lost lines with the next batch (the map still holds the entries).
        this.lines = [...batch.filter((l) => !l.startsWith('{"d"')), ...this.lines];
        for (const w of waiters) w.reject(e);
        return false;
      }
    }
    return true;
  }

  /** Replace the journal with just the pending entries (durable when resolved). */
  private async rewrite(): Promise<void> {
    const text = [...this.map.values()].map((e) => JSON.stringify({ a: e }) + '\n').join('');
    await this.journal.close();
    await writeFileDurable(this.file, text);
    const size = Buffer.byteLength(text);
    this.journal = new DurableAppendFile(this.file, { size, validLength: size });
    this.doneLines = 0;
  }

  /** Finish pending writes and close the file. */
  async close(): Promise<void> {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.pump();
    }
    await this.whenDurable();
    await this.writing;
    await this.journal.close();
  }
}
