/**
 * Single flight: concurrent requests for one key share one piece of work.
 *
 * Each caller keeps its own abort signal and progress callback. The shared
 * work is cancelled only when every caller that joined it has left (a caller
 * without a signal never leaves), so one impatient caller cannot cancel a
 * download that others still wait for.
 */
import { abortError } from '../util/async-locks.js';

export type ProgressFn = (bytes: number, total?: number) => void;

export interface FlightContext {
  /** Aborted when the last interested caller leaves, or by abortAll(). */
  readonly signal: AbortSignal;
  /** Fans out to every joined caller's onProgress. */
  readonly progress: ProgressFn;
  /** Whether this flight was started as a fresh one (see `run`). */
  readonly fresh: boolean;
}

interface Flight<T> {
  key: string;
  promise: Promise<T>;
  fresh: boolean;
  controller: AbortController;
  /** Callers with a signal still waiting. */
  abortable: number;
  /** Some caller without a signal joined: the work always runs to the end. */
  pinned: boolean;
  listeners: Set<ProgressFn>;
}

export interface JoinOptions {
  /** Do not join a running flight that was not itself started fresh. */
  fresh?: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

export class SingleFlight<T> {
  private readonly flights = new Map<string, Flight<T>>();

  constructor(private readonly onListenerError: (e: unknown) => void = () => undefined) {}

  get size(): number {
    return this.flights.size;
  }

  /** Join the flight for `key`, or start `work` for it. */
  run(key: string, work: (ctx: FlightContext) => Promise<T>, opts: JoinOptions = {}): Promise<T> {
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    let flight = this.flights.get(key);
    if (!flight || (opts.fresh && !flight.fresh)) flight = this.start(key, work, opts.fresh === true);
    return this.join(flight, opts);
  }

  /** Abort every flight and wait until all have settled. */
  async abortAll(reason: unknown): Promise<void> {
    const all = [...this.flights.values()];
    for (const f of all) f.controller.abort(reason);
    await Promise.allSettled(all.map((f) => f.promise));
  }

  private start(key: string, work: (ctx: FlightContext) => Promise<T>, fresh: boolean): Flight<T> {
    const flight: Flight<T> = {
      key,
      promise: Promise.resolve(undefined as unknown as T),
      fresh,
      controller: new AbortController(),
      abortable: 0,
      pinned: false,
      listeners: new Set(),
    };
    const progress: ProgressFn = (bytes, total) => {
      for (const cb of flight.listeners) {
        try {
          cb(bytes, total);
        } catch (e) {
          this.onListenerError(e);
        }
      }
    };
    // Registered before the work starts, so even a synchronous failure in
    // `work` finds (and removes) its own entry.
    this.flights.set(key, flight);
    flight.promise = (async () => {
      try {
        return await work({ signal: flight.controller.signal, progress, fresh });
      } finally {
        this.end(flight);
      }
    })();
    // Callers observe the promise through join(); keep an unobserved rejection quiet.
    flight.promise.catch(() => undefined);
    return flight;
  }

  private end(flight: Flight<T>): void {
    if (this.flights.get(flight.key) === flight) this.flights.delete(flight.key);
  }

  private join(flight: Flight<T>, opts: JoinOptions): Promise<T> {
    const { signal, onProgress } = opts;
    if (onProgress) flight.listeners.add(onProgress);
    if (!signal) {
      flight.pinned = true;
      return flight.promise.finally(() => onProgress && flight.listeners.delete(onProgress));
    }
    flight.abortable++;
    return new Promise<T>((resolve, reject) => {
      const leave = (): void => {
        signal.removeEventListener('abort', onAbort);
        if (onProgress) flight.listeners.delete(onProgress);
        flight.abortable--;
      };
      const onAbort = (): void => {
        leave();
        if (flight.abortable === 0 && !flight.pinned) {
          // Nobody wants it any more; later callers start afresh rather than join a cancelled flight.
          this.end(flight);
          flight.controller.abort(abortError(signal));
        }
        reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      flight.promise.then(
        (r) => {
          leave();
          resolve(r);
        },
        (e: unknown) => {
          leave();
          reject(e);
        },
      );
    });
  }
}
