// Runs every benchmark in sequence (download, index-scale, sweep — those that
// exist), forwarding this process's arguments to each. `npm run bench` builds first.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BENCHES = ['download.js', 'index-scale.js', 'sweep.js'];
const forwarded = process.argv.slice(2);

let failed = 0;
for (const name of BENCHES) {
  const file = path.join(HERE, name);
  if (!fs.existsSync(file)) continue;
  console.log(`\n## bench/${name}`);
  const code = await new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...forwarded], { stdio: 'inherit' });
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0)));
  });
  if (code !== 0) {
    console.log(`bench/${name} exited with ${code}`);
    failed++;
  }
}
process.exitCode = failed ? 1 : 0;
