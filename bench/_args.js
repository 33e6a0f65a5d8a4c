// Shared by the benches: `--key value`, `--key=value` and bare `--flag`.
// Unknown flags are ignored: bench/run.js forwards the same args to every bench.
export function parseArgs(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const [k, inline] = a.slice(2).split('=', 2);
    if (inline !== undefined) out[k] = inline;
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[k] = argv[++i];
    else out[k] = true;
  }
  return out;
}

/** A numeric option with a default. */
export function numberArg(args, key, dflt) {
  return args[key] === undefined ? dflt : Number(args[key]);
}

/**
 * Wait until the block devices are quiet: `sync`, then poll /proc/diskstats
 * until nothing is in flight and no sector was written or discarded for
 * `quietMs`. The root filesystem here is mounted with `discard`, so deleting
 * a previous run's files keeps the disk busy for seconds and slows whatever
 * runs next; without this, the tool that runs second pays for the first.
 * Returns the ms waited (capped by `timeoutMs`; Linux only, else 0).
 */
export async function settleDisk({ quietMs = 750, timeoutMs = 30_000 } = {}) {
  const fs = await import('node:fs');
  const { spawnSync } = await import('node:child_process');
  const t0 = performance.now();
  spawnSync('sync');
  const sample = () => {
    let text;
    try {
      text = fs.readFileSync('/proc/diskstats', 'utf8');
    } catch {
      return undefined;
    }
    let busy = 0;
    let sig = '';
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length < 14 || /^(loop|ram|zram)/.test(f[2])) continue;
      busy += Number(f[11]);
      // sectors written, discards completed (when the kernel reports them)
      sig += `${f[9]}/${f[14] ?? ''}/${f[16] ?? ''};`;
    }
    return { busy, sig };
  };
  let last = sample();
  if (!last) return 0;
  let quietSince = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, 50));
    const s = sample();
    if (s.busy > 0 || s.sig !== last.sig) quietSince = performance.now();
    else if (performance.now() - quietSince >= quietMs) break;
    last = s;
  }
  return Math.round(performance.now() - t0);
}
