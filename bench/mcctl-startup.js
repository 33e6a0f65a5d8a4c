// Start-up cost of mcctl: `node bin/mcctl.js stats --socket S` against `node -e 0`,
// run N times each, alternating (so load on the machine hits both alike),
// medians and their ratio. The target (SPEC/brief) is a ratio <= 1.5.
//
//   node bench/mcctl-startup.js [--runs 30] [--socket PATH] [--args "status --json"]
//
// Without --socket it answers `stats` from a tiny in-bench NDJSON JSON-RPC
// server on a Unix socket (so the figure is mcctl's own cost, not the
// daemon's); with --socket it talks to a running mediacached.
// Needs dist/ (npm run build). Prints a JSON summary line at the end.
// For reference it also times the floor: a 4-line raw client (connect, send
// `stats`, print the reply line, exit) — what any Node client must pay.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './_args.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MCCTL = path.join(HERE, '..', 'bin', 'mcctl.js');


const RAW_CLIENT =
  "const s=require('net').connect(process.argv[1]);" +
  "s.on('connect',()=>s.write(JSON.stringify({jsonrpc:'2.0',id:1,method:'stats',params:{}})+'\\n'));" +
  "s.on('data',(d)=>{process.stdout.write(d);s.destroy();});";

const STATS = {
  totalFiles: 3,
  totalSize: 123456,
  byType: { image: { count: 2, size: 1000 }, video: { count: 1, size: 122456 }, audio: { count: 0, size: 0 }, document: { count: 0, size: 0 } },
  queue: { queued: 0, running: 0, done: 3, failed: 0 },
};

function startServer(socket) {
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      let nl;
      while ((nl = buf.indexOf(0x0a)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, nl).toString('utf8'));
        buf = buf.subarray(nl + 1);
        sock.write(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: STATS }) + '\n');
      }
    });
  });
  return new Promise((resolve) => server.listen(socket, () => resolve(server)));
}

function timeRun(args) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('exit', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${args.join(' ')} exited ${code}: ${err}`));
      else resolve(ms);
    });
  });
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const runs = Number(opts.runs ?? 30);
  let server;
  let dir;
  let socket = opts.socket;
  if (!socket) {
    dir = fs.mkdtempSync(path.join(process.platform === 'win32' ? os.tmpdir() : '/tmp', 'mcb-'));
    socket = path.join(dir, 's.sock');
    server = await startServer(socket);
  }
  const cmd = (opts.args ?? 'stats').split(/\s+/).filter(Boolean);
  const mcctlArgs = [MCCTL, ...cmd, '--socket', socket];
  try {
    // Warm the file cache for both.
    await timeRun(['-e', '0']);
    await timeRun(mcctlArgs);
    const base = [];
    const ours = [];
    const floor = [];
    for (let i = 0; i < runs; i++) {
      base.push(await timeRun(['-e', '0']));
      ours.push(await timeRun(mcctlArgs));
      floor.push(await timeRun(['-e', RAW_CLIENT, socket]));
    }
    const mb = median(base);
    const mo = median(ours);
    const mf = median(floor);
    const ratio = mo / mb;
    process.stdout.write(`node -e 0             median ${mb.toFixed(1)} ms (min ${Math.min(...base).toFixed(1)})\n`);
    process.stdout.write(`raw 4-line client     median ${mf.toFixed(1)} ms (min ${Math.min(...floor).toFixed(1)})\n`);
    process.stdout.write(`mcctl ${cmd.join(' ').padEnd(15)} median ${mo.toFixed(1)} ms (min ${Math.min(...ours).toFixed(1)})\n`);
    process.stdout.write(`ratio ${ratio.toFixed(2)} (target <= 1.5; raw client ${(mf / mb).toFixed(2)}) over ${runs} alternating runs, ${server ? 'in-bench server' : `daemon at ${socket}`}\n`);
    process.stdout.write(
      JSON.stringify({ bench: 'mcctl-startup', runs, nodeMedianMs: +mb.toFixed(1), rawClientMedianMs: +mf.toFixed(1), mcctlMedianMs: +mo.toFixed(1), ratio: +ratio.toFixed(3), rawRatio: +(mf / mb).toFixed(3) }) + '\n',
    );
  } finally {
    if (server) await new Promise((r) => server.close(r));
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exitCode = 1;
});
