/**
 * Distinct real media bodies of any size for quota, revalidation and resume
 * tests: a real PNG fixture followed by deterministic filler (the type is
 * sniffed from the leading bytes, so every body is a valid image/png).
 */
import crypto from 'node:crypto';
import type { StoredRecord } from '../../src/core/types.js';
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

const hex = (alg: string, s: string): string => crypto.createHash(alg).update(s).digest('hex');

/** An index record for `name` (digests of the name, not of a file), as the index and database tests store them. */
export function storedRecord(name: string, over: Partial<StoredRecord> = {}): StoredRecord {
  return {
    md5: hex('md5', name),
    sha256: hex('sha256', name),
    fileSize: 100,
    mimeType: 'image/png',
    mediaType: 'image',
    extension: '.png',
    urls: [`http://127.0.0.1/${name}`],
    fetchedAt: '2026-01-01T00:00:00.000Z',
    verifiedAt: '2026-01-02T03:04:05.678Z',
    ...over,
  };
}
