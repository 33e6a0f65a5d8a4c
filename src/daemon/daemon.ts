/**
 * The running daemon (main.ts already holds the cache-dir lock): logger → socket → MediaCache →
 * JobStore → Scheduler → Sweeper + SweepTimer → Inbox → serve.
 * SIGTERM/SIGINT drain and exit 0; SIGHUP reopens the log and reloads.
 *
 * The socket is bound first (so a second daemon learns at once that it is
 * not wanted) but answers E_UNAVAILABLE until every part is
 * open; clients that poll `status` see the daemon as up only when it is.
 * (main.ts loads this module only after the config is valid, so --help and
 * config errors do not pay for loading the engine.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { MediaCache } from '../core/cache/media-cache.js';
import { MediaCacheError } from '../core/errors.js';
import { TYPE_DIRS } from '../core/types.js';
import { describeTarget } from '../core/postgres/pg-db.js';
import { RPC_METHOD_NAMES, type DamageReport, type RpcMethodName } from '../core/protocol/rpc.js';
import { Sweeper } from '../core/verify/sweep.js';
import { resolveConfig, type DaemonConfig, type ResolveInput } from './config.js';
import { createHandlers, type HandlerTable } from './rpc/handlers.js';
import { Inbox } from './inbox/inbox.js';
import { PgBatchStore } from './inbox/batch-store.js';
import { PgBatches } from '../core/postgres/pg-batches.js';
import { JobStore } from './jobs/job-store.js';
import { Hooks } from './hooks/index.js';
import { installSignalHandlers, type CacheLock, armShutdownDeadline, hardExit } from './lifecycle.js';
import { createDaemonLogger, type DaemonLogger } from './log.js';
import { applyReload } from './reload.js';
import { RpcServer, type RpcHandler } from './rpc/server.js';
import { Scheduler } from './jobs/scheduler.js';
import { StartupError } from './rpc/socket-bind.js';
import { SweepTimer } from './sweeps/timer.js';
import { ClusterSweepGate } from './sweeps/cluster-gate.js';
import { ClusterMember } from './cluster.js';
import { loadNodeId } from './jobs/node-id.js';
import { ClusterScheduler } from './jobs/cluster-scheduler.js';
import { IdleAwareSweepRate } from './sweeps/rate.js';
import { readLastReport, writeLastReport } from './sweeps/last-report.js';
import { effectiveMaxConnections, openFileLimit } from './rpc/limits.js';

/** The cache's own network limit; the Scheduler is the real (reloadable) limiter. */
const CACHE_NET_LIMIT = 256;
/** Time allowed for flushing and closing after the drain grace period. */
const SHUTDOWN_SLACK_MS = 15_000;
/** At shutdown, running exec hooks get at most this long (within the slack above). */
const HOOKS_GRACE_MS = 5_000;

/** One line for the start-up log: the preset and whatever lists are set. */
function describePolicy(config: DaemonConfig): string {
  const p = config.urlPolicy;
  const lists = (['allowHosts', 'denyHosts', 'allowCidrs', 'denyCidrs', 'allowPorts'] as const)
    .filter((k) => (p[k]?.length ?? 0) > 0)
    .map((k) => `${k}=${p[k]!.join(',')}`);
  return [p.preset ?? 'open', ...lists].join(' ');
}

interface Parts {
  cache?: MediaCache;
  store?: JobStore;
  scheduler?: Scheduler | ClusterScheduler;
  sweeper?: Sweeper;
  timer?: SweepTimer;
  inbox?: Inbox;
  rpc?: RpcServer;
  lock?: CacheLock;
  hooks?: Hooks;
  cluster?: ClusterMember;
}

async function shutdown(parts: Parts, config: DaemonConfig, logger: DaemonLogger, signal: string): Promise<number> {
  const t0 = Date.now();
  let code = 0;
  let inboxStuck = false;
  const step = async (what: string, fn: () => Promise<unknown> | unknown): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      code = 1;
      logger.error(`shutdown: ${what} failed`, { error: e instanceof Error ? e : String(e) });
    }
  };
  // Stop intake first: no new connections, no new inbox files, no new sweeps.
  await step('stop accepting connections', () => parts.rpc?.stopAccepting());
  await step('close inbox', async () => {
    if (parts.inbox && !(await parts.inbox.close())) inboxStuck = true;
  });
  parts.timer?.stop();
  // The sweep first: it stops at the next file, and a closed sweeper refuses new ones.
  await step('stop sweep', () => parts.sweeper?.close());
  await step('drain scheduler', () => parts.scheduler?.drain(config.graceMs));
  // Pending webhook deliveries stay in the outbox for the next start.
  await step('close hooks', () => parts.hooks?.close(Math.min(config.graceMs, HOOKS_GRACE_MS)));
  await step('close job store', () => parts.store?.close());
  await step('leave the cluster', () => parts.cluster?.leave());
  await step('close cache (flush index)', () => parts.cache?.close());
  await step('close socket', () => parts.rpc?.close());
  parts.lock?.release();
  logger.info('stopped', { signal, tookMs: Date.now() - t0 });
  await logger.end();
  // process.exit() would wait for the stuck worker thread forever.
  if (inboxStuck) hardExit('an inbox read was still stuck at exit; ending with SIGKILL (everything else was closed cleanly)');
  return code;
}

/** Whether any type folder holds an entry (one read per folder, however large). */
async function holdsContent(cacheDir: string): Promise<boolean> {
  for (const dir of Object.values(TYPE_DIRS)) {
    let d: fs.Dir | undefined;
    try {
      d = await fs.promises.opendir(path.join(cacheDir, dir));
      if ((await d.read()) !== null) return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return true; // unreadable: let the sweep look and report
    } finally {
      await d?.close().catch(() => undefined);
    }
  }
  return false;
}

/** What the index and the job store found damaged at open, or undefined when nothing. */
function damageReport(cache: MediaCache, store: JobStore): DamageReport | undefined {
  // PostgreSQL has no index files to find damaged: only the job store's count there.
  const index = cache.index.embedded?.damage ?? { files: [], missingShards: [], lostRows: 0 };
  const jobs = store.damage;
  const any = index.files.length + index.missingShards.length + index.lostRows + jobs.files.length + jobs.lostJobs + jobs.restoredJobs > 0;
  return any ? { index: { ...index, files: [...index.files], missingShards: [...index.missingShards] }, jobs: { ...jobs, files: [...jobs.files] } } : undefined;
}

/**
 * Run until a signal stops us, holding `lock` (main.ts takes it before
 * loading this module). Returns the exit code when start-up fails, or -1
 * once serving (the signal handlers exit the process later).
 */
export async function runDaemon(initial: DaemonConfig, configInput: () => ResolveInput, version: string, lock: CacheLock): Promise<number> {
  let config = initial;
  let logger: DaemonLogger;
  try {
    logger = createDaemonLogger({ level: config.logLevel, logFile: config.logFile });
  } catch (e) {
    process.stderr.write(`mediacached: cannot open the log file ${config.logFile}: ${(e as Error).message}. Fix --log-file (or its folder's permissions).\n`);
    lock.release();
    return 2;
  }
  const startedAt = new Date();
  const parts: Parts = { lock };
  let ready: HandlerTable | undefined;

  installSignalHandlers({
    logger,
    // Jobs are durable (running ones are re-queued at the next start); what
    // a forced exit can lose is the last coalesced index write, whose files
    // the next sweep adopts back.
    forced: () => {
      parts.rpc?.unlinkNow();
      parts.lock?.release();
    },
    shutdown: (sig) => {
      // Whatever hangs (a wedged disk, a stuck close, a worker parked in a
      // system call), systemd's stop timeout must not be our exit path.
      armShutdownDeadline(config.graceMs + SHUTDOWN_SLACK_MS, sig, logger, () => {
        parts.rpc?.unlinkNow();
        parts.lock?.release();
      });
      return shutdown(parts, config, logger, sig);
    },
    reload: async () => {
      logger.info('SIGHUP: reopening the log file and re-reading the configuration');
      let next: DaemonConfig;
      try {
        const r = await resolveConfig(configInput());
        if (r.kind !== 'config') return;
        next = r.config;
      } catch (e) {
        await logger.reopen();
        logger.error(`reload: configuration not changed: ${e instanceof Error ? e.message : String(e)}`);
        return;
      }
      const out = await applyReload(config, next, {
        setLimits: (o) => parts.scheduler?.setLimits(o),
        setSchedule: (expr) => parts.timer?.setSchedule(expr),
        setSweepOptions: (o) => {
          if (o.maxDurationMs !== undefined) parts.sweeper?.setOptions({ maxDurationMs: o.maxDurationMs });
          if (o.rateMBps !== undefined) sweepRate.configure(o.rateMBps);
        },
        setLogLevel: (l) => (logger.level = l),
        reopenLog: (f) => logger.reopen(f),
      }, logger);
      config = out.config;
    },
  });

  const sweepRate = new IdleAwareSweepRate(config.sweepRate);
  try {
    logger.info(`mediacached ${version} starting`, { pid: process.pid });
    logger.info(`cache dir:   ${config.cacheDir}`);
    logger.info(`index:       ${config.database ? `PostgreSQL, ${describeTarget(config.database)} (state in ${config.indexDir})` : config.indexDir}`);
    logger.info(`socket:      ${config.socket}`);
    logger.info(`inboxes:     ${config.inboxes.join(', ') || '(none)'}`);
    logger.info(`config file: ${config.configFile ?? '(none)'}`);
    logger.info(`log file:    ${config.logFile ?? '(stderr only)'}`);

    if (lock.tookOverStale) logger.warn('replaced a stale cache lock', { ...lock.tookOverStale });

    // Until everything is open every method answers E_UNAVAILABLE.
    const lazy = Object.fromEntries(
      RPC_METHOD_NAMES.map((m: RpcMethodName): [string, RpcHandler] => [
        m,
        (p, conn) => {
          if (!ready) return Promise.reject(new MediaCacheError('E_UNAVAILABLE', 'the daemon is still starting; try again in a moment'));
          return (ready[m] as RpcHandler)(p, conn);
        },
      ]),
    );
    const fdLimit = openFileLimit();
    const conns = effectiveMaxConnections(config.maxConnections, fdLimit);
    if (conns.capped) logger.warn(`max-connections ${config.maxConnections} lowered to ${conns.limit}: a quarter of the open-file limit (${fdLimit}), so descriptors remain for downloads and the inbox watcher`);
    logger.info(`url policy:  ${describePolicy(config)}`);
    parts.rpc = new RpcServer({ socketPath: config.socket, handlers: lazy, logger, maxConnections: conns.limit, idleTimeoutMs: config.idleTimeoutMs });
    const bound = await parts.rpc.listen();
    if (bound.activated) logger.info('using the socket passed by systemd (socket activation)');

    parts.cache = await MediaCache.open({
      cacheDir: config.cacheDir,
      indexDir: config.indexDir,
      concurrency: Math.max(CACHE_NET_LIMIT, config.concurrency),
      timeoutMs: config.timeoutMs,
      maxFileSize: config.maxFileSize,
      maxSize: config.maxSize,
      minFree: config.minFree,
      urlPolicy: config.urlPolicy,
      logger,
      // main.ts took the cache lock (with our socket in it) before anything else.
      lock: false,
      ...(config.database ? { database: config.database } : {}),
    });
    // A job's end is saved only after its webhook deliveries are (hooks/index.ts).
    parts.store = await JobStore.open(path.join(config.indexDir, 'jobs'), {
      logger,
      maxEnded: config.jobHistory,
      maxEndedAgeMs: config.jobHistoryAgeMs,
      beforeWrite: () => parts.hooks?.whenDurable() ?? Promise.resolve(),
    });
    if (parts.cache.database) {
      parts.cluster = new ClusterMember(parts.cache.database, loadNodeId(config.indexDir), logger);
      await parts.cluster.join({ version, socket: config.socket, concurrency: config.concurrency, perHost: config.perHost });
    }
    const { concurrency, perHost, retries, retryDelayMs: retryBaseMs } = config;
    // Cluster mode: jobs are claimed from the shared queue (limits per host hold for the cluster).
    parts.scheduler = parts.cluster
      ? new ClusterScheduler({ cache: parts.cache, queue: parts.cluster.queue, nodeId: parts.cluster.nodeId, concurrency, perHost, retries, retryBaseMs, logger })
      : new Scheduler({ cache: parts.cache, store: parts.store, concurrency, perHost, retries, retryBaseMs, logger });
    parts.sweeper = new Sweeper(parts.cache, { rateMBps: 0, maxDurationMs: config.sweepMaxDuration, revalidateAfterMs: config.revalidateAfter, logger });
    // In a cluster the scheduled sweep runs only while this daemon holds the cluster's sweep lease.
    const scheduled = parts.cluster ? new ClusterSweepGate(parts.sweeper, parts.cluster.nodes, parts.cluster.nodeId, logger) : parts.sweeper;
    parts.timer = new SweepTimer({ schedule: config.sweepSchedule, sweeper: scheduled, logger });
    const rpc = parts.rpc;
    parts.scheduler.on('event', (ev) => {
      rpc.broadcast(ev);
      sweepRate.poke();
    });
    sweepRate.attach(parts.scheduler, parts.sweeper);
    parts.sweeper.on('event', (ev) => rpc.broadcast(ev));
    // status shows the last sweep across restarts.
    const kept = await readLastReport(config.indexDir, logger);
    if (kept) parts.sweeper.restoreLastReport(kept);
    parts.sweeper.on('event', (ev) => {
      if (ev.type === 'sweep.done') void writeLastReport(config.indexDir, ev.report, logger);
    });
    parts.hooks = await Hooks.open(config, { indexDir: config.indexDir, logger, version });
    parts.hooks?.attach(parts.scheduler);
    parts.hooks?.attach(parts.sweeper);
    parts.cache.events.on('event', (ev) => rpc.broadcast(ev));
    parts.scheduler.start();
    parts.timer.start();
    // The inbox uses enqueue, get and the job events, which ClusterScheduler has too. In a cluster its
    // batches are rows of mediacache.batches (a shared inbox folder is taken once), else files in the state dir.
    const clusterInbox = parts.cluster && parts.scheduler instanceof ClusterScheduler
      ? { batches: new PgBatchStore(new PgBatches(parts.cluster.db), parts.cluster.nodeId), adoptJobs: parts.scheduler.adopt.bind(parts.scheduler) }
      : {};
    const localBatches = parts.store.batches().length;
    if ('batches' in clusterInbox && localBatches > 0) {
      logger.warn(`inbox: ${localBatches} unreported batch file(s) in the state dir from embedded mode are not resumed in cluster mode (no report is written for them)`);
    }
    parts.inbox = new Inbox({ dirs: config.inboxes, scheduler: parts.scheduler as Scheduler, store: parts.store, logger, maxLines: config.inboxMaxLines, maxBytes: config.inboxMaxBytes, ...clusterInbox });
    await parts.inbox.start();

    const { cache, scheduler, sweeper, timer, store, cluster } = parts;
    const damage = damageReport(cache, store);
    if (damage) logger.error('start-up found damaged index or job-store files; what could not be read back is listed in `mcctl status`', { ...damage });
    const embedded = cache.index.embedded;
    if (embedded?.createdNew && !(await holdsContent(config.cacheDir))) {
      logger.info('new cache: nothing to adopt', { cacheDir: config.cacheDir });
    } else if (embedded?.needsRebuild) {
      logger.warn('no usable index (index missing or damaged): running an adopting sweep to build it from the files on disk');
      sweeper.start({ adopt: true }).done.catch((e: unknown) => logger.error('index rebuild sweep failed', { error: e instanceof Error ? e : String(e) }));
    }
    // Requests are served from here on, after the start-up lines above are written.
    ready = createHandlers({ version, startedAt, config: () => config, cache, scheduler, sweeper, sweepTimer: timer, damage: () => damage, ...(cluster ? { cluster } : {}) });
    logger.info('ready', { next_sweep: timer.nextRunAt()?.toISOString(), startupMs: Date.now() - startedAt.getTime() });
    return -1; // keep running
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (e instanceof StartupError) logger.error(msg);
    else logger.error(`cannot start: ${msg}`, { error: e instanceof Error ? e : String(e) });
    // Undo what was opened, but never remove a socket or lock we do not own.
    await shutdown(parts, config, logger, 'startup failure').catch(() => 1);
    return 1;
  }
}
