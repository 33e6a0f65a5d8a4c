// Summarize a V8 .cpuprofile (from `--profile DIR`): self time by function
// and by source area, and the inclusive time of the steps of a download.
//   node bench/_cpuprof.js FILE.cpuprofile [--top 30]
import fs from 'node:fs';
import { parseArgs, numberArg } from './_args.js';

const args = parseArgs(process.argv.slice(3));
const prof = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const self = new Map();
const dt = prof.timeDeltas;
for (let i = 0; i < prof.samples.length; i++) self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + (dt[i] ?? 0) / 1000);
const total = [...self.values()].reduce((a, b) => a + b, 0);

/** Source area of a frame: our module folder, a dependency, node internals, or V8/native. */
function area(cf) {
  const u = cf.url || '';
  if (!u) return cf.functionName ? `(${cf.functionName})` : '(native)';
  let m = /\/dist\/(.*)\/[^/]+\.js$/.exec(u);
  if (m) return `ours:${m[1]}`;
  m = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(u);
  if (m) return `dep:${m[1]}`;
  m = /^node:(internal\/)?([^/]+)/.exec(u);
  if (m) return `node:${m[2]}`;
  return u;
}

const fnSelf = new Map();
const areaSelf = new Map();
for (const [id, ms] of self) {
  const cf = byId.get(id).callFrame;
  const key = `${cf.functionName || '(anon)'} ${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
  fnSelf.set(key, (fnSelf.get(key) ?? 0) + ms);
  const a = area(cf);
  areaSelf.set(a, (areaSelf.get(a) ?? 0) + ms);
}

/** Inclusive time of frames whose function name matches (each sample counted once). */
function inclusive(re) {
  let ms = 0;
  for (const [id, t] of self) {
    for (let n = id; n !== undefined; n = parent.get(n)) {
      if (re.test(byId.get(n).callFrame.functionName)) {
        ms += t;
        break;
      }
    }
  }
  return ms;
}

const pct = (ms) => `${ms.toFixed(0).padStart(6)} ms ${((100 * ms) / total).toFixed(1).padStart(5)}%`;
const top = numberArg(args, 'top', 30);
console.log(`total sampled ${total.toFixed(0)} ms`);
console.log('\nself time by area:');
for (const [k, v] of [...areaSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v)}  ${k}`);
console.log('\nself time by function:');
for (const [k, v] of [...fnSelf].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${pct(v)}  ${k}`);
const steps = String(args.steps ?? 'onResponseData,take,queueWrite|flushWrites|writeAll,onSinkFinished,commitTmp|publish|writeSmall,readRecordMetadata,appendPending|flush,garbage collector');
console.log('\ninclusive time of steps:');
for (const s of steps.split(',')) {
  const re = s === 'garbage collector' ? /^\(garbage collector\)$/ : new RegExp(`^(${s})$`);
  console.log(`  ${pct(inclusive(re))}  ${s}`);
}
