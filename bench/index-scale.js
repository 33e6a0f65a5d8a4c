#!/usr/bin/env node
/**
 * Index scale benchmark: cold start and the cost of recording one download
 * with 100k and 1M records indexed, and of a full compaction.
 *
 *   npx tsc -p tsconfig.build.json && node bench/index-scale.js [--records N] [--iterations K]
 *                                       [--journal-mib M|auto] [--keep DIR]
 *
 * --records N runs one size instead of 100k and 1M; --iterations K puts+flushes
 * (default 20); --journal-mib: size of the journal left beside the shards
 * (default auto: just under the index's default compaction threshold, the
 * most a cold start can have to replay from one journal; 0 = no journal);
 * --keep DIR generates into DIR/<N> once and keeps it for reruns (the journal
 * is consumed by the run: regenerate with a new DIR).
 *
 * For each size the parent generates a synthetic index in a temp dir (shard
 * files and journal written directly; generation time is not a measured
 * figure), then a FRESH child process opens it (so cold start and RSS are not
 * flattered by warm caches of this process; open replays the journal) and
 * records K downloads, each `put()` + `flush()` (with the journal at the
 * threshold, a background compaction starts during them), while
 * `monitorEventLoopDelay` and a 1 ms drift probe watch how long the event
 * loop is blocked. Then it puts one record into every shard and closes: the
 * close compacts, rewriting all 256 shards (the whole index). Targets: cold
 * start <= 10 s, max block for put+flush and for the compaction <= 100 ms.
 * Prints one table to stdout; cleans up.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

const SHARD_DIGITS = 2;
const MIMES = [
  ['image', 'image/jpeg', '.jpg'],
  ['image', 'image/png', '.png'],
  ['video', 'video/mp4', '.mp4'],
  ['audio', 'audio/mpeg', '.mp3'],
  ['document', 'application/pdf', '.pdf'],
];

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function synthRecord(i, md5) {
  const [mediaType, mimeType, extension] = MIMES[i % MIMES.length];
  const t = new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
  const r = {
    md5,
    sha256: createHash('sha256').update(md5).digest('hex'),
    fileSize: 1000 + (i % 5_000_000),
    mimeType,
    mediaType,
    extension,
    urls: [`https://media.example.org/assets/${i % 977}/item-${i}${extension}?v=${i % 13}`],
    fetchedAt: t,
    verifiedAt: t,
  };
  if (mediaType === 'image' || mediaType === 'video') {
    r.width = 640 + (i % 1280);
    r.height = 480 + (i % 720);
  }
  if (i % 2 === 0) r.etag = `"${md5.slice(0, 16)}"`;
  return r;
}

/**
 * Write N records straight into the shard layout IndexDb reads (meta.json +
 * records/xx.jsonl), with the index's own row encoder so the format matches.
 */
async function generate(dir, n, journalMiB) {
  const { toRow } = await import('../dist/core/entry-index/record-codec.js');
  const { SHARD_FORMAT } = await import('../dist/core/entry-index/shard-format.js');
  const { journalBatch, tombstoneLine } = await import('../dist/core/entry-index/journal-format.js');
  const shards = Array.from({ length: 16 ** SHARD_DIGITS }, () => []);
  const rnd = randomBytes(16 * n);
  for (let i = 0; i < n; i++) {
    const md5 = rnd.subarray(i * 16, i * 16 + 16).toString('hex');
    shards[parseInt(md5.slice(0, SHARD_DIGITS), 16)].push(synthRecord(i, md5));
  }
  mkdirSync(join(dir, 'records'), { recursive: true });
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ schemaVersion: 1, shardDigits: SHARD_DIGITS, createdAt: new Date().toISOString() }));
  let bytes = 0;
  let rowChars = 0;
  shards.forEach((records, s) => {
    const rows = records.map(toRow);
    for (const r of rows) rowChars += r.length;
    const text = SHARD_FORMAT.stringify({ rows });
    bytes += text.length;
    writeFileSync(join(dir, 'records', `${s.toString(16).padStart(SHARD_DIGITS, '0')}.jsonl`), text);
  });
  // The journal a sweep leaves: verifiedAt refreshed on records all over the
  // index, 200 per flush, 1 in 100 entries a removal. `auto`: IndexDb's
  // default threshold (rowChars/8 within 8..32 MiB) less 8 KiB.
  const target =
    journalMiB === 'auto' ? Math.min(32 * 2 ** 20, Math.max(8 * 2 ** 20, rowChars / 8)) - 8192 : Number(journalMiB) * 2 ** 20;
  const parts = [];
  let journalBytes = 0;
  let entries = 0;
  let k = 0;
  while (journalBytes + 80_000 < target) {
    const lines = [];
    for (let b = 0; b < 200; b++, k++) {
      const s = shards[(k * 7919) % shards.length];
      const r = s[(k * 104729) % s.length];
      if (k % 100 === 99) lines.push(tombstoneLine(r.md5));
      else lines.push(toRow({ ...r, verifiedAt: new Date(Date.UTC(2026, 5, 1) + k).toISOString() }));
    }
    const buf = journalBatch(lines, journalBytes === 0);
    parts.push(buf);
    journalBytes += buf.length;
    entries += lines.length;
  }
  if (parts.length > 0) writeFileSync(join(dir, 'journal.jsonl'), Buffer.concat(parts));
  return { bytes, journalBytes, entries };
}

function diskBytes(dir) {
  return readdirSync(join(dir, 'records')).reduce((sum, f) => sum + statSync(join(dir, 'records', f)).size, 0);
}

/** Longest gap between 1 ms ticks while `fn` runs: a direct event-loop block probe. */
async function withBlockProbe(fn) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let maxGap = 0;
  const probe = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  h.enable();
  const t0 = performance.now();
  let ms;
  try {
    await fn();
  } finally {
    ms = performance.now() - t0;
    // one more tick so a block at the very end is seen
    await new Promise((r) => setTimeout(r, 2));
    clearInterval(probe);
    h.disable();
  }
  return { ms, maxGapMs: maxGap, histMaxMs: h.max / 1e6 };
}

async function measure(dir, iterations) {
  const { IndexDb } = await import('../dist/core/entry-index/index-db.js');
  const { shardOf } = await import('../dist/core/entry-index/record-codec.js');
  let db;
  const cpu0 = process.cpuUsage();
  const open = await withBlockProbe(async () => {
    db = await IndexDb.open(dir, { flushDelayMs: 200 });
  });
  const cpu = process.cpuUsage(cpu0);
  globalThis.gc?.();
  const mem = process.memoryUsage();
  const puts = [];
  const n0 = db.size;
  const added = [];
  for (let k = 0; k < iterations; k++) {
    const rec = synthRecord(n0 + k, randomBytes(16).toString('hex'));
    added.push(rec);
    puts.push(
      await withBlockProbe(async () => {
        db.put(rec);
        await db.flush();
      }),
    );
  }
  const ok = db.size === n0 + iterations && added.every((r) => db.md5ForUrl(r.urls[0]) === r.md5);
  // One record more in every shard, then close: the compaction rewrites them all.
  const seen = new Set();
  while (seen.size < 16 ** SHARD_DIGITS) {
    const md5 = randomBytes(16).toString('hex');
    if (seen.has(shardOf(md5))) continue;
    seen.add(shardOf(md5));
    db.put(synthRecord(n0 + iterations + seen.size, md5));
  }
  await db.flush();
  const compactionsBefore = db.diagnostics.compactions;
  const close = await withBlockProbe(() => db.close());
  const worst = (key) => Math.max(...puts.map((p) => p[key]));
  const median = (key) => puts.map((p) => p[key]).sort((a, b) => a - b)[Math.floor(puts.length / 2)];
  return {
    records: n0,
    openMs: open.ms,
    openCpuMs: (cpu.user + cpu.system) / 1000,
    openMaxBlockMs: Math.max(open.maxGapMs, open.histMaxMs),
    rssMiB: mem.rss / 2 ** 20,
    heapMiB: mem.heapUsed / 2 ** 20,
    putFlushMaxBlockMs: Math.max(worst('maxGapMs'), worst('histMaxMs')),
    flushMedianMs: median('ms'),
    flushMaxMs: worst('ms'),
    replayed: db.diagnostics.replayedEntries,
    closeMs: close.ms,
    closeMaxBlockMs: Math.max(close.maxGapMs, close.histMaxMs),
    compactions: db.diagnostics.compactions - compactionsBefore,
    shardWrites: db.diagnostics.shardWrites,
    ok,
  };
}

function fmt(n, d = 0) {
  return n.toFixed(d);
}

async function main() {
  const iterations = Number(arg('--iterations', '20'));
  const journalMiB = arg('--journal-mib', 'auto');
  if (arg('--measure')) {
    process.stdout.write(JSON.stringify(await measure(arg('--measure'), iterations)) + '\n');
    return;
  }
  const sizes = arg('--records') ? [Number(arg('--records'))] : [100_000, 1_000_000];
  const rows = [];
  for (const n of sizes) {
    // --keep DIR: generate into DIR once and keep it (repeat runs skip generation).
    const keep = arg('--keep') ? join(arg('--keep'), String(n)) : undefined;
    const dir = keep ?? mkdtempSync(join(tmpdir(), 'mediacache-index-bench-'));
    try {
      const t0 = performance.now();
      const gen = keep && existsSync(join(keep, 'meta.json')) ? { bytes: diskBytes(keep), journalBytes: 0, entries: 0 } : await generate(dir, n, journalMiB);
      const genMs = performance.now() - t0;
      const child = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--measure', dir, '--iterations', String(iterations)], {
        encoding: 'utf8',
        maxBuffer: 1 << 20,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      if (child.status !== 0) throw new Error(`measurement child failed (${child.status ?? child.signal})`);
      const r = JSON.parse(child.stdout.trim().split('\n').pop());
      rows.push({ ...r, diskMiB: gen.bytes / 2 ** 20, journalMiB: gen.journalBytes / 2 ** 20, genMs });
    } finally {
      if (!keep) rmSync(dir, { recursive: true, force: true });
    }
  }
  const head = [
    'records',
    'index MiB',
    'journal MiB',
    'cold start ms',
    'open CPU ms',
    'open max block ms',
    'RSS MiB',
    'heap MiB',
    `put+flush max block ms (${iterations}x)`,
    'flush median ms',
    'flush max ms',
    'close+compact ms',
    'compact max block ms',
    'ok',
  ];
  const lines = rows.map((r) => [
    String(r.records),
    fmt(r.diskMiB, 1),
    fmt(r.journalMiB, 1),
    fmt(r.openMs),
    fmt(r.openCpuMs),
    fmt(r.openMaxBlockMs),
    fmt(r.rssMiB),
    fmt(r.heapMiB),
    fmt(r.putFlushMaxBlockMs, 1),
    fmt(r.flushMedianMs, 1),
    fmt(r.flushMaxMs, 1),
    fmt(r.closeMs),
    fmt(r.closeMaxBlockMs, 1),
    r.ok && r.openMs <= 10_000 && r.putFlushMaxBlockMs <= 100 && r.closeMaxBlockMs <= 100 ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const row = (cells) => '| ' + cells.map((c, i) => c.padStart(widths[i])).join(' | ') + ' |';
  console.log(row(head));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const l of lines) console.log(row(l));
  console.log(`(targets: cold start <= 10000 ms, put+flush and compaction max block <= 100 ms; node ${process.version}, ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
  console.log('(open CPU = user+system time of the whole process during open, GC helper threads included; on a busy machine cold start (wall) can be several times that)');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
