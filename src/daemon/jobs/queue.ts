/**
 * The in-memory dispatch order of queued jobs: per priority, per host, FIFO.
 *
 * Choosing the next job is "the lowest priority number, then the oldest
 * sequence number, among hosts that still have a free slot". Keeping one FIFO
 * per (priority, host) makes that a look at each host's head instead of a scan
 * of every queued job: with 100,000 jobs on one host a dispatch is O(1), and a
 * host at its limit costs one skipped head, not a walk past all its jobs.
 * Cost per dispatch is O(number of hosts with queued jobs).
 *
 * Entries are removed lazily: the scheduler bumps a job's generation whenever
 * it (re)queues it, and an entry whose generation is no longer current is
 * dropped when it reaches a head.
 */

export interface QueueRef {
  id: string;
  seq: number;
  host: string;
  priority: number;
  gen: number;
}

/** Ring-buffer deque: O(1) push/unshift/shift. */
export class Deque<T> {
  private buf: Array<T | undefined> = new Array(16);
  private head = 0;
  private len = 0;

  get length(): number {
    return this.len;
  }

  push(v: T): void {
    if (this.len === this.buf.length) this.grow();
    this.buf[(this.head + this.len) % this.buf.length] = v;
    this.len++;
  }

  unshift(v: T): void {
    if (this.len === this.buf.length) this.grow();
    this.head = (this.head - 1 + this.buf.length) % this.buf.length;
    this.buf[this.head] = v;
    this.len++;
  }

  peek(): T | undefined {
    return this.len === 0 ? undefined : this.buf[this.head];
  }

  shift(): T | undefined {
    if (this.len === 0) return undefined;
    const v = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.len--;
    return v;
  }

  private grow(): void {
    const next = new Array<T | undefined>(this.buf.length * 2);
    for (let i = 0; i < this.len; i++) next[i] = this.buf[(this.head + i) % this.buf.length];
    this.buf = next;
    this.head = 0;
  }
}

export class DispatchQueue {
  private readonly byPriority = new Map<number, Map<string, Deque<QueueRef>>>();
  private priorities: number[] = [];

  /** Append (or, for a job that was already ahead, put back in front). */
  add(ref: QueueRef, front = false): void {
    let hosts = this.byPriority.get(ref.priority);
    if (!hosts) {
      hosts = new Map();
      this.byPriority.set(ref.priority, hosts);
      this.priorities = [...this.byPriority.keys()].sort((a, b) => a - b);
    }
    let dq = hosts.get(ref.host);
    if (!dq) hosts.set(ref.host, (dq = new Deque()));
    if (front) dq.unshift(ref);
    else dq.push(ref);
  }

  /**
   * Remove and return the next runnable entry. `isLive` drops stale entries;
   * `hasRoom(host)` says whether that host may start another download.
   */
  next(isLive: (r: QueueRef) => boolean, hasRoom: (host: string) => boolean): QueueRef | undefined {
    for (const p of this.priorities) {
      const hosts = this.byPriority.get(p)!;
      let best: Deque<QueueRef> | undefined;
      let bestSeq = Infinity;
      for (const [host, dq] of hosts) {
        let head = dq.peek();
        while (head && !isLive(head)) {
          dq.shift();
          head = dq.peek();
        }
        if (!head) {
          hosts.delete(host);
          continue;
        }
        if (head.seq < bestSeq && hasRoom(host)) {
          best = dq;
          bestSeq = head.seq;
        }
      }
      if (hosts.size === 0) {
        this.byPriority.delete(p);
        this.priorities = this.priorities.filter((x) => x !== p);
      }
      if (best) return best.shift();
    }
    return undefined;
  }
}
