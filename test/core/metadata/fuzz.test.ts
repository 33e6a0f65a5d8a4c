/**
 * Damaged and hostile containers: for every fixture, 1,000 random
 * truncations and byte flips (seeded: a failure names its seed and case, and
 * reproduces). extractMetadata must never throw, never run past its time
 * limit, and answer either clean metadata or a reason.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { extractMetadata, isCleanMetadata } from '../../../src/core/metadata/index.js';
import { CASES, pathOf, sniffedOf } from './fixtures.js';

const ROUNDS = Number(process.env.META_FUZZ_ROUNDS ?? 1000);
const SEED = Number(process.env.META_FUZZ_SEED ?? 0x5eed);
const LIMIT_MS = 3000;

/** mulberry32: small, fast, good enough to spread mutations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** One damaged copy: a cut, a few flipped bytes (headers sit at both ends, so those are hit more), or both. */
export function mutate(src: Buffer, rnd: () => number): Buffer {
  const int = (n: number): number => Math.floor(rnd() * n);
  const mode = int(3);
  let b = Buffer.from(src);
  if (mode !== 1) b = b.subarray(0, int(b.length));
  if (mode !== 0 && b.length > 0) {
    const flips = 1 + int(8);
    for (let i = 0; i < flips; i++) {
      const zone = int(3);
      const pos = zone === 0 ? int(Math.min(b.length, 512)) : zone === 1 ? b.length - 1 - int(Math.min(b.length, 512)) : int(b.length);
      // Either a random byte or the start of a huge length field.
      if (int(4) === 0 && pos + 4 <= b.length) b.writeUInt32BE(int(2) ? 0xffffffff : 0x7fffffff, pos);
      else b[pos] = int(256);
    }
  }
  return b;
}

for (const c of CASES) {
  t.test(`${c.file}: ${ROUNDS} damaged copies`, async (t) => {
    const src = fs.readFileSync(pathOf(c));
    const dir = t.testdir({});
    const seed = SEED ^ [...c.file].reduce((h, ch) => Math.imul(h, 31) + ch.charCodeAt(0), 7);
    const rnd = prng(seed);
    // Mutations are drawn in round order (so a seed always gives the same copies) and run in a few lanes.
    const copies = Array.from({ length: ROUNDS }, () => mutate(src, rnd));
    const problems: string[] = [];
    let withMeta = 0;
    let slowest = 0;
    let next = 0;
    const lane = async (k: number): Promise<void> => {
      const p = path.join(dir, `fuzz${k}${path.extname(c.file)}`);
      while (next < ROUNDS) {
        const i = next++;
        fs.writeFileSync(p, copies[i]);
        const t0 = performance.now();
        let r;
        try {
          r = await extractMetadata(p, sniffedOf(c), { timeoutMs: LIMIT_MS });
        } catch (e) {
          problems.push(`round ${i}: threw ${String(e)}`);
          continue;
        }
        const ms = performance.now() - t0;
        slowest = Math.max(slowest, ms);
        if (ms > LIMIT_MS + 1000) problems.push(`round ${i}: took ${Math.round(ms)} ms`);
        if (r.metadata !== undefined) {
          withMeta++;
          if (r.error !== undefined || !isCleanMetadata(r.metadata)) problems.push(`round ${i}: bad answer ${JSON.stringify(r)}`);
        } else if (typeof r.error !== 'string' || r.error === '') problems.push(`round ${i}: no metadata and no reason ${JSON.stringify(r)}`);
      }
    };
    await Promise.all([0, 1, 2, 3].map(lane));
    t.same(problems.slice(0, 5), [], `seed ${seed}: every answer valid-shaped or absent, within the limit`);
    t.comment(`${c.file}: ${withMeta}/${ROUNDS} still gave metadata; slowest ${Math.round(slowest)} ms`);
  });
}
