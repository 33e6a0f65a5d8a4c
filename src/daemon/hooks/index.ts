/**
 * Hooks: hand the daemon's results to a pipeline. Subscribes to the
 * scheduler's and sweeper's internal event streams, turns them into hook
 * events (events.ts), runs the exec hooks (exec-hook.ts) and queues webhook
 * deliveries in the durable outbox (outbox.ts, webhook.ts).
 *
 * Nothing here can slow a download: handling an event only queues work.
 * The one ordering the daemon relies on is whenDurable(): the job store
 * awaits it before writing, so a job is never saved as ended while the
 * webhook deliveries of its end are not yet on disk (a crash in between
 * re-runs the job, which ends again with the same delivery id).
 */
import path from 'node:path';
import type { EventEmitter } from 'node:events';
import type { Logger } from '../../core/util/logger.js';
import type { RpcEvent } from '../../core/protocol/rpc.js';
import type { Clock } from './clock.js';
import { fromRpcEvent, upstreamChanged, type HookEvent, type UpstreamChangedData } from './events.js';
import { ExecHooks } from './exec-hook.js';
import { Outbox } from './outbox.js';
import { redactUrl, WebhookDeliverer } from './webhook.js';

export * from './events.js';
export { verifySignature, sign } from './sign.js';

export interface HooksConfig {
  onDone?: string[];
  onFailed?: string[];
  hookTimeoutMs: number;
  hookConcurrency: number;
  webhooks: readonly string[];
  webhookSecret?: string;
}

export interface HooksDeps {
  /** The outbox lives in `<indexDir>/outbox/`. */
  indexDir: string;
  logger: Logger;
  version?: string;
  /** Tests: drive the retry timing. */
  clock?: Clock;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export const OUTBOX_DIR = 'outbox';

export class Hooks {
  private constructor(
    private readonly log: Logger,
    readonly exec: ExecHooks | undefined,
    readonly outbox: Outbox | undefined,
    readonly webhook: WebhookDeliverer | undefined,
    private readonly webhooks: readonly string[],
  ) {}

  /** Undefined when no hook is configured (the daemon then wires nothing). */
  static async open(cfg: HooksConfig, deps: HooksDeps): Promise<Hooks | undefined> {
    const log = deps.logger;
    const commands: Partial<Record<HookEvent['type'], string[]>> = {};
    if (cfg.onDone) commands['job.done'] = cfg.onDone;
    if (cfg.onFailed) commands['job.failed'] = cfg.onFailed;
    const exec = Object.keys(commands).length ? new ExecHooks({ commands, timeoutMs: cfg.hookTimeoutMs, concurrency: cfg.hookConcurrency, logger: log }) : undefined;
    let outbox: Outbox | undefined;
    let webhook: WebhookDeliverer | undefined;
    if (cfg.webhooks.length > 0) {
      outbox = await Outbox.open(path.join(deps.indexDir, OUTBOX_DIR), { logger: log, ...(deps.clock ? { now: () => deps.clock!.now() } : {}) });
      // Deliveries for a URL no longer configured are dropped: the URL was
      // removed on purpose (or changed, and the old one is gone).
      const wanted = new Set(cfg.webhooks);
      const stale = outbox.entries().filter((e) => !wanted.has(e.target));
      for (const e of stale) outbox.ack(e.key);
      if (stale.length) log.warn('outbox: dropped deliveries to webhook URLs no longer configured', { count: stale.length, urls: [...new Set(stale.map((e) => redactUrl(e.target)))] });
      if (!cfg.webhookSecret) log.warn('webhooks configured without --webhook-secret: deliveries are not signed');
      webhook = new WebhookDeliverer({
        outbox,
        secret: cfg.webhookSecret,
        timeoutMs: cfg.hookTimeoutMs,
        logger: log,
        userAgent: `mediacache/${deps.version ?? '0'}`,
        ...(deps.clock ? { clock: deps.clock } : {}),
        ...(deps.baseDelayMs !== undefined ? { baseDelayMs: deps.baseDelayMs } : {}),
        ...(deps.maxDelayMs !== undefined ? { maxDelayMs: deps.maxDelayMs } : {}),
      });
      if (outbox.size) log.info('outbox: deliveries pending from an earlier run', { count: outbox.size });
      webhook.kick();
    }
    if (!exec && !webhook) return undefined;
    log.info('hooks', { onDone: cfg.onDone?.[0], onFailed: cfg.onFailed?.[0], webhooks: cfg.webhooks.map(redactUrl), signed: !!cfg.webhookSecret });
    return new Hooks(log, exec, outbox, webhook, cfg.webhooks);
  }

  /** Listen to an emitter of RpcEvent ('event'), e.g. the Scheduler or the Sweeper. */
  attach(source: EventEmitter): void {
    source.on('event', (ev: RpcEvent) => this.onRpcEvent(ev));
  }

  onRpcEvent(ev: RpcEvent): void {
    if (ev.type === 'job.progress' || ev.type === 'job.queued' || ev.type === 'sweep.progress') return;
    for (const h of fromRpcEvent(ev)) this.emit(h);
  }

  /** Entry point for revalidation: the content behind `data.url` changed. */
  emitUpstreamChanged(data: UpstreamChangedData, o: { id?: string } = {}): void {
    this.emit(upstreamChanged(data, o));
  }

  /** Hand one event to every hook. Never throws, never waits. */
  emit(ev: HookEvent): void {
    try {
      this.exec?.run(ev);
      if (this.outbox && this.webhook) {
        const { entries, durable } = this.outbox.add(ev, this.webhooks);
        durable.catch(() => undefined); // logged by the outbox; the entries stay pending in memory
        if (entries.length) this.webhook.kick();
      }
    } catch (e) {
      this.log.error('hooks: could not queue an event', { event: ev.type, id: ev.id, error: String(e) });
    }
  }

  /** Resolves once every webhook delivery queued so far is on disk (never rejects). */
  whenDurable(): Promise<void> {
    return this.outbox?.whenDurable() ?? Promise.resolve();
  }

  /**
   * Shutdown: stop delivering (pending deliveries stay in the outbox for the
   * next start), give running exec hooks up to `graceMs`.
   */
  async close(graceMs: number): Promise<void> {
    await Promise.all([this.exec?.close(graceMs), this.webhook?.close()]);
    await this.outbox?.close();
  }
}
