/**
 * Durable write of a file produced in pieces (an inbox report, a large batch
 * record): tmp file (O_EXCL, exact `mode` whatever the umask) → the pieces,
 * one awaited write per group so the event loop keeps turning → fsync →
 * rename → fsync of the directory. A reader sees the old file or the whole
 * new one, never a part; the whole text is never one string in memory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, TEMP_PREFIX } from './durable-file.js';

const WRITE_BYTES = 256 * 1024;
let tmpSeq = 0;

export async function writeChunksDurable(file: string, pieces: Iterable<string>, mode: number): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${TEMP_PREFIX}${path.basename(file)}-${process.pid}-${++tmpSeq}`);
  let renamed = false;
  try {
    const C = fs.constants;
    const fh = await fs.promises.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | (C.O_NOFOLLOW ?? 0), mode);
    try {
      await fh.chmod(mode);
      let buf = '';
      for (const p of pieces) {
        buf += p;
        if (buf.length >= WRITE_BYTES) {
          await fh.writeFile(buf);
          buf = '';
        }
      }
      if (buf) await fh.writeFile(buf);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
    renamed = true;
    await fsyncDir(dir);
  } finally {
    if (!renamed) await fs.promises.unlink(tmp).catch(() => undefined);
  }
}
