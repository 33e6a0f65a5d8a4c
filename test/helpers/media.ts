/**
 * Distinct real media bodies of any size for quota, revalidation and resume
 * tests: a real PNG fixture followed by deterministic filler (the type is
 * sniffed from the leading bytes, so every body is a valid image/png).
 */
import crypto from 'node:crypto';
import { fixture } from './origin.js';

const PNG = fixture('sample.png');

/** `size` bytes (>= the fixture), different for every `seed`. */
export function mediaBody(seed: string | number, size: number): Buffer {
  const out = Buffer.alloc(Math.max(size, PNG.length));
  PNG.copy(out, 0);
  let off = PNG.length;
  let block = crypto.createHash('sha256').update(`filler-${seed}`).digest();
  while (off < out.length) {
    block = crypto.createHash('sha256').update(block).digest();
    off += block.copy(out, off);
  }
  return out;
}

export const md5Of = (b: Buffer): string => crypto.createHash('md5').update(b).digest('hex');
