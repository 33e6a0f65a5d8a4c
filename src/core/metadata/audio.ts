/**
 * Audio files (MP3, Ogg Vorbis/Opus, FLAC, WAV) through music-metadata, in a
 * worker thread that can be killed.
 *
 * Why a thread: a parser library fed a hostile file may loop or allocate
 * without yielding; the daemon must stay responsive and within memory. The
 * worker has a small heap limit, runs one file at a time, is terminated when
 * a file exceeds its time limit (and started afresh for the next), and is
 * ended after IDLE_MS without work, so no isolate is kept alive for nothing.
 */
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { MetadataError, type MediaMetadata } from './types.js';

const IDLE_MS = 5_000;
/** Files up to this size are handed to the parser as one buffer (page-cache reads; far fewer calls). */
const WHOLE_BELOW = 1024 * 1024;

/** What the worker answers: music-metadata's `format`, reduced to plain values. */
interface AudioFormat {
  codec?: string;
  container?: string;
  duration?: number;
  sampleRate?: number;
  channels?: number;
  bitrate?: number;
  bitsPerSample?: number;
}

/* c8 ignore start: runs in the worker (serialized below) */
function audioWorkerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const wt = require('node:worker_threads') as typeof import('node:worker_threads');
  const fs = require('node:fs') as typeof import('node:fs');
  const { mmUrl, wholeBelow } = wt.workerData as { mmUrl: string; wholeBelow: number };
  let mm: Promise<typeof import('music-metadata')> | undefined;
  const opts = { duration: false, skipCovers: true, skipPostHeaders: true };
  wt.parentPort!.on('message', (job: { id: number; path: string; size: number; mimeType: string; data?: Uint8Array }) => {
    mm ??= import(mmUrl) as Promise<typeof import('music-metadata')>;
    // A small file is read whole at once: the parser's many small reads then cost nothing.
    mm.then((lib) =>
      job.data
        ? lib.parseBuffer(job.data, { size: job.size, mimeType: job.mimeType }, opts)
        : job.size <= wholeBelow
        ? lib.parseBuffer(fs.readFileSync(job.path), { size: job.size, mimeType: job.mimeType }, opts)
        : lib.parseFile(job.path, opts),
    )
      .then((meta) => {
        const f = meta.format;
        wt.parentPort!.postMessage({
          id: job.id,
          ok: {
            codec: f.codec,
            container: f.container,
            duration: f.duration,
            sampleRate: f.sampleRate,
            channels: f.numberOfChannels,
            bitrate: f.bitrate,
            bitsPerSample: f.bitsPerSample,
          },
        });
      })
      .catch((e: unknown) => wt.parentPort!.postMessage({ id: job.id, error: String((e as Error)?.message ?? e) }));
  });
}
/* c8 ignore stop */

const WORKER_SOURCE = `(${audioWorkerMain.toString()})()`;

interface Job {
  id: number;
  path: string;
  size: number;
  mimeType: string;
  timeoutMs: number;
  signal?: AbortSignal;
  data?: Uint8Array;
  resolve: (f: AudioFormat) => void;
  reject: (e: Error) => void;
}

class AudioProbe {
  private worker: Worker | undefined;
  private queue: Job[] = [];
  private running: { job: Job; timer: NodeJS.Timeout; onAbort: () => void } | undefined;
  private idle: NodeJS.Timeout | undefined;
  private nextId = 1;
  private readonly mmUrl = import.meta.resolve('music-metadata');

  /** `data`: the whole file already in memory (a small download not written yet); otherwise it is read from `path`. */
  probe(path: string, size: number, mimeType: string, timeoutMs: number, signal?: AbortSignal, data?: Uint8Array): Promise<AudioFormat> {
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, path, size, mimeType, timeoutMs, signal, resolve, reject, ...(data ? { data } : {}) });
      this.pump();
    });
  }

  /** Whether a worker thread is alive (tests check that it is ended when idle). */
  get alive(): boolean {
    return this.worker !== undefined;
  }

  private pump(): void {
    if (this.running) return;
    const job = this.queue.shift();
    if (!job) {
      this.idle ??= setTimeout(() => this.stop(), IDLE_MS).unref();
      return;
    }
    if (job.signal?.aborted) {
      job.reject(job.signal.reason instanceof Error ? job.signal.reason : new MetadataError('aborted'));
      return this.pump();
    }
    clearTimeout(this.idle);
    this.idle = undefined;
    const w = this.start();
    const fail = (e: Error): void => {
      this.finish(job);
      this.stop();
      job.reject(e);
      this.pump();
    };
    const timer = setTimeout(() => fail(new MetadataError(`time limit of ${job.timeoutMs} ms reached`)), job.timeoutMs);
    const onAbort = (): void => fail(job.signal!.reason instanceof Error ? job.signal!.reason : new MetadataError('aborted'));
    job.signal?.addEventListener('abort', onAbort, { once: true });
    this.running = { job, timer, onAbort };
    w.ref();
    // `data` is copied into the message (never transferred: it may be a view of a reused slab).
    w.postMessage({ id: job.id, path: job.path, size: job.size, mimeType: job.mimeType, ...(job.data ? { data: job.data } : {}) });
  }

  private finish(job: Job): void {
    if (this.running?.job !== job) return;
    clearTimeout(this.running.timer);
    job.signal?.removeEventListener('abort', this.running.onAbort);
    this.running = undefined;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: { mmUrl: this.mmUrl, wholeBelow: WHOLE_BELOW },
      // A hostile file that makes the parser allocate without bound kills the worker, not the daemon.
      resourceLimits: { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 4, stackSizeMb: 4 },
    });
    w.on('message', (m: { id: number; ok?: AudioFormat; error?: string }) => {
      const cur = this.running?.job;
      if (!cur || cur.id !== m.id) return;
      this.finish(cur);
      w.unref();
      if (m.ok) cur.resolve(m.ok);
      else cur.reject(new MetadataError(m.error ?? 'unknown error'));
      this.pump();
    });
    const died = (e: Error): void => {
      if (this.worker !== w) return;
      this.worker = undefined;
      const cur = this.running?.job;
      if (cur) {
        this.finish(cur);
        cur.reject(new MetadataError(`audio parser thread ended: ${e.message}`));
      }
      this.pump();
    };
    w.on('error', died);
    w.on('exit', (code) => died(new Error(`exit code ${code}`)));
    this.worker = w;
    return w;
  }

  private stop(): void {
    clearTimeout(this.idle);
    this.idle = undefined;
    const w = this.worker;
    this.worker = undefined;
    if (w) void w.terminate();
  }
}

let probe: AudioProbe | undefined;

/** The process-wide audio probe (one worker thread at most). */
export function audioProbe(): AudioProbe {
  probe ??= new AudioProbe();
  return probe;
}

/** ffprobe's codec names for music-metadata's. */
function codecOf(f: AudioFormat): string | undefined {
  const c = (f.codec ?? '').toLowerCase();
  if (c.startsWith('mpeg 1 layer 3') || c.startsWith('mpeg 2 layer 3') || c.startsWith('mpeg 2.5 layer 3')) return 'mp3';
  if (/^mpeg [\d.]+ layer 2/.test(c)) return 'mp2';
  if (c.startsWith('opus')) return 'opus';
  if (c.startsWith('vorbis')) return 'vorbis';
  if (c.startsWith('flac')) return 'flac';
  if (c.startsWith('speex')) return 'speex';
  if (c === 'pcm' || c.startsWith('pcm')) return f.bitsPerSample === 8 ? 'pcm_u8' : `pcm_s${f.bitsPerSample ?? 16}le`;
  if (c.startsWith('ieee_float')) return `pcm_f${f.bitsPerSample ?? 32}le`;
  return c || undefined;
}

/** `whole`: the file's bytes when they are all in memory already (nothing is read from `path` then). */
export async function readAudio(path: string, mimeType: string, timeoutMs: number, signal?: AbortSignal, whole?: Uint8Array): Promise<MediaMetadata> {
  let size: number;
  if (whole) size = whole.length;
  else {
    const st = await fs.promises.stat(path);
    if (!st.isFile()) throw new MetadataError('not a regular file');
    size = st.size;
  }
  const f = await audioProbe().probe(path, size, mimeType, timeoutMs, signal, whole);
  return {
    audioCodec: codecOf(f),
    durationSec: f.duration,
    sampleRate: f.sampleRate,
    channels: f.channels,
    bitrate: f.bitrate === undefined ? undefined : Math.round(f.bitrate),
  };
}
