/**
 * Reading job-store files that may be damaged (job-store.ts's load path).
 *
 * A job shard is one JSON document, `{"jobs":[{…},{…},…]}`. One garbled byte
 * or a cut-off tail makes the whole document unparsable, but every job in it
 * is its own object: salvageJobs() takes each element of the array that
 * still parses and validates on its own. Element starts are found as `[{"`
 * or `,{"`, which cannot occur inside a JSON string (the writer escapes every
 * `"` in a string as `\"`), so text inside a URL can never pass for a job.
 *
 * A job whose bytes changed but still parse and validate (a letter of its URL)
 * cannot be told apart from the original here; it runs, and fails with a
 * reason if its URL is now wrong.
 */
import { parseMediaUrl } from '../../core/fetch/url.js';
import { JOB_STATES } from '../../core/protocol/rpc.js';
import type { BatchRecord, JobRecord } from './job-store.js';

/** The inbox's priority (inbox.ts): what a job re-created from its inbox batch gets. */
const RECOVERED_PRIORITY = 10;
/** Longest job object looked at when salvaging (a URL is at most a few KiB). */
const MAX_JOB_CHARS = 1 << 20;

const STATES: ReadonlySet<unknown> = new Set(JOB_STATES);

/** Whether `x` is a job as the store writes it (ids derive from sequence numbers: `j<seq>`). */
export function isJobRecord(x: unknown): x is JobRecord {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const j = x as Record<string, unknown>;
  return (
    Number.isSafeInteger(j.seq) &&
    (j.seq as number) > 0 &&
    j.id === `j${j.seq as number}` &&
    typeof j.url === 'string' &&
    STATES.has(j.state) &&
    typeof j.priority === 'number' &&
    typeof j.attempts === 'number' &&
    typeof j.createdAt === 'string' &&
    typeof j.updatedAt === 'string' &&
    typeof j.source === 'string'
  );
}

/** The jobs of a shard's text, and how many elements could not be read. Never throws. */
export function readJobShard(text: string): { jobs: JobRecord[]; unreadable: number; damaged: boolean } {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return { ...salvageJobs(text), damaged: true };
  }
  const list = (doc as { jobs?: unknown } | null)?.jobs;
  if (!Array.isArray(list)) return { ...salvageJobs(text), damaged: true };
  const jobs = list.filter(isJobRecord);
  return { jobs, unreadable: list.length - jobs.length, damaged: jobs.length !== list.length };
}

/** Every element of the jobs array that still parses and validates on its own. */
export function salvageJobs(text: string): { jobs: JobRecord[]; unreadable: number } {
  const jobs: JobRecord[] = [];
  let unreadable = 0;
  let from = 0;
  for (;;) {
    const start = nextElementStart(text, from);
    if (start < 0) break;
    const end = objectEnd(text, start);
    let job: unknown;
    if (end > 0) {
      try {
        job = JSON.parse(text.slice(start, end));
      } catch {
        job = undefined;
      }
    }
    if (isJobRecord(job)) {
      jobs.push(job);
      from = end;
    } else {
      unreadable++;
      from = start + 1;
    }
  }
  return { jobs, unreadable };
}

function nextElementStart(text: string, from: number): number {
  for (let i = text.indexOf('{"', from); i >= 0; i = text.indexOf('{"', i + 1)) {
    const before = text.charCodeAt(i - 1);
    if (i > 0 && (before === 91 /* [ */ || before === 44) /* , */) return i;
  }
  return -1;
}

/** Index after the `}` closing the object opened at `start`, or -1 (cut short, or longer than any job). */
function objectEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  const limit = Math.min(text.length, start + MAX_JOB_CHARS);
  for (let i = start; i < limit; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) depth++;
    else if (c === 125 /* } */ || c === 93 /* ] */) {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * Jobs an inbox batch still refers to but the store no longer has (its shard
 * was damaged or deleted), re-created as queued from the batch's own copy of
 * the line: inbox work stays recoverable, and its report complete. A job
 * that had already ended runs again, and the cache answers it.
 */
export function jobsMissingFromBatches(batches: Iterable<BatchRecord>, has: (id: string) => boolean, nowIso: string): JobRecord[] {
  const out = new Map<string, JobRecord>();
  for (const b of batches) {
    for (const [line, raw, id] of b.lines) {
      if (!id || has(id) || out.has(id)) continue;
      const seq = Number(id.slice(1));
      let url: string;
      try {
        url = parseMediaUrl(raw).href;
      } catch {
        continue; // it was valid when enqueued; a damaged batch line cannot be run
      }
      if (!Number.isSafeInteger(seq) || seq <= 0) continue;
      out.set(id, { id, seq, url, state: 'queued', priority: RECOVERED_PRIORITY, attempts: 0, createdAt: b.createdAt, updatedAt: nowIso, source: `${b.sourcePath}:${line}` });
    }
  }
  return [...out.values()];
}
