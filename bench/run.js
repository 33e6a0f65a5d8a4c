// Runs every benchmark in bench/ in sequence (download, index-scale, sweep
// first, then any other bench/*.js), forwarding this process's arguments to
// each; each bench ignores flags it does not know. `npm run bench` builds first.
// Not benches: this file, origin.js (download.js's origin process) and names starting with "_".
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIRST = ['download.js', 'index-scale.js', 'sweep.js'];
const NOT_BENCHES = new Set(['run.js', 'origin.js']);
const forwarded = process.argv.slice(2);

const found = fs.readdirSync(HERE).filter((n) => n.endsWith('.js') && !NOT_BENCHES.has(n) && !n.startsWith('_'));
const order = [...FIRST.filter((n) => found.includes(n)), ...found.filter((n) => !FIRST.includes(n)).sort()];

const failed = [];
for (const name of order) {
  console.log(`\n## bench/${name}`);
  const t0 = performance.now();
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(HERE, name), ...forwarded], { stdio: 'inherit' });
    child.once('error', () => resolve(1));
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
  });
  console.log(`## bench/${name}: exit ${code}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (code !== 0) failed.push(name);
}
if (failed.length) console.log(`\nfailed: ${failed.join(', ')}`);
process.exitCode = failed.length ? 1 : 0;
