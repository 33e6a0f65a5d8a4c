/**
 * Early collection of socket read buffers during large downloads.
 *
 * Every socket read is a fresh 64 KiB ArrayBuffer. A download copies each
 * one out at once, so they die young, but V8 only scavenges when its young
 * generation fills with JS objects, and the few hundred bytes of objects per
 * read fill it only after many megabytes of reads: the buffers pile up as
 * external memory until that memory itself forces a full collection (on
 * 4 parallel large downloads: 45 MiB of dead buffers at the peak). A minor
 * collection every YOUNG_GC_EVERY bytes received (~0.1-0.5 ms each) bounds
 * that pile. Only where enabled: the daemon does (it owns its process); the
 * library never changes V8 flags in someone else's process.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

/** Bytes received (all downloads together) between two minor collections. */
export const YOUNG_GC_EVERY = 8 * 1024 * 1024;

type MinorGc = () => void;
let minorGc: MinorGc | undefined;
let since = 0;

/**
 * Turn the collections on, with `gc` (tests) or V8's own, exposed at run
 * time. Returns whether they are on.
 */
export function enableYoungGc(gc?: MinorGc): boolean {
  if (gc) {
    minorGc = gc;
    return true;
  }
  try {
    v8.setFlagsFromString('--expose-gc');
    const fn = vm.runInNewContext('gc') as ((o?: { type: 'minor' | 'major' }) => void) | undefined;
    if (typeof fn === 'function') minorGc = () => fn({ type: 'minor' });
  } catch {
    // not available in this runtime: buffers are then collected by V8's own schedule
  }
  return minorGc !== undefined;
}

/** Count bytes received; run a minor collection every YOUNG_GC_EVERY bytes. */
export function noteReceived(bytes: number): void {
  if (!minorGc) return;
  since += bytes;
  if (since < YOUNG_GC_EVERY) return;
  since = 0;
  minorGc();
}
