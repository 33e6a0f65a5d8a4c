/**
 * A daemon's stable id in a cluster, kept in its state dir (`node-id`), so a
 * restarted daemon rejoins as itself (its expired leases and its share of
 * the queue stay its own). Host name plus random bits: readable in
 * `mcctl status`, unique even for several daemons on one host.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const FILE = 'node-id';
const VALID = /^[A-Za-z0-9._-]{1,100}$/;

export function loadNodeId(stateDir: string): string {
  const p = path.join(stateDir, FILE);
  try {
    const v = fs.readFileSync(p, 'utf8').trim();
    if (VALID.test(v)) return v;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = `${os.hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60)}-${crypto.randomBytes(4).toString('hex')}`;
  fs.mkdirSync(stateDir, { recursive: true });
  const tmp = `${p}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, id + '\n');
  fs.renameSync(tmp, p);
  return id;
}
