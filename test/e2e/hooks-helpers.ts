/** Shared pieces of the hooks end-to-end tests: hook scripts and outbox inspection. */
import fs from 'node:fs';
import path from 'node:path';

/**
 * A node script for --on-done/--on-failed that writes `<outDir>/<delivery id>.json`
 * holding its stdin and its MEDIACACHE_* environment.
 */
export function recordingHook(dir: string): { argv: string[]; outDir: string } {
  const outDir = path.join(dir, 'hook-out');
  fs.mkdirSync(outDir, { recursive: true });
  const script = path.join(dir, 'record-hook.mjs');
  fs.writeFileSync(
    script,
    `import fs from 'node:fs';
let s = '';
process.stdin.on('data', (d) => (s += d)).on('end', () => {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('MEDIACACHE_')));
  fs.writeFileSync(process.argv[2] + '/' + env.MEDIACACHE_DELIVERY_ID + '.json', JSON.stringify({ stdin: JSON.parse(s), env }));
});
`,
  );
  return { argv: [process.execPath, script, outDir], outDir };
}

/** Pending (added, not yet delivered) outbox lines, by replaying the journal as the daemon would. */
export function pendingInOutbox(cacheDir: string): string[] {
  const f = path.join(cacheDir, 'index', 'outbox', 'outbox.jsonl');
  let text: string;
  try {
    text = fs.readFileSync(f, 'utf8');
  } catch {
    return [];
  }
  const pending = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const l = JSON.parse(line) as { a?: { key: string; event: { id: string } }; d?: string };
      if (l.a) pending.set(l.a.key, l.a.event.id);
      else if (l.d) pending.delete(l.d);
    } catch {
      break;
    }
  }
  return [...pending.values()];
}
