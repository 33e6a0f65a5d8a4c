/**
 * The index's snapshot files: meta.json and the 256 shard files
 * records/xx.jsonl (shard-format.ts has their format). Each shard is a lowdb
 * `Low` over a DurableDataFile, written from the in-memory rows of its shard.
 *
 * Invariants:
 * - A shard file on disk is a complete old or new version: written to a temp
 *   file, fsynced, renamed into place; one fsync of records/ after a batch of
 *   shards makes every rename in it durable (write() resolves only after it).
 * - meta.json lists the shard files this index has written. A shard file is
 *   only ever replaced, never deleted by us, so a listed file missing at open
 *   was deleted by something else and its records are lost (open reports it).
 *   A new shard is listed only after its write is durable (noteWritten runs
 *   after write()), so meta never lists a file that was never written; a
 *   crash in between leaves an unlisted shard, which open lists from the files
 *   it finds.
 * - meta.json carries SCHEMA_VERSION; an index is marked with the current
 *   version before anything is written in the current formats, so older code
 *   refuses it instead of misreading it.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { DurableDataFile, DurableJSONFile, fsyncDir } from '../util/durable-file.js';
import { MediaCacheError } from '../errors.js';
import { readOrRecover, type Recovery } from './files.js';
import { SHARD_COUNT, SHARD_DIGITS, shardName } from './record-codec.js';
import { SHARD_FORMAT, type ShardData } from './shard-format.js';
import type { IndexState } from './state.js';
import type { IndexDiagnostics } from './diagnostics.js';

/**
 * 2: the journal (an index closed cleanly may keep one). Version 1 had only
 * shards; a version-1 reader would ignore a journal and lose its changes.
 * 3: per-row checksums in shards and journal entries (shard and journal
 * format 2) and the list of shard files in meta.json. A version-2 reader
 * would take every format-2 shard for damage and move it aside.
 * Rows may also carry the media metadata and quota columns (14 to 21); the
 * shipped version-2 format had 13 columns, which version 3 still reads.
 * An index is marked with this version (meta.json rewritten at open) before
 * anything is written in the new formats, so older code refuses it.
 */
export const SCHEMA_VERSION = 3;

export interface MetaFile {
  schemaVersion: number;
  shardDigits: number;
  createdAt: string;
  /**
   * Names of the shard files this index has written (a shard file, once
   * written, is only ever replaced, never deleted): one listed here but
   * absent at open was deleted by something else, and its records are lost.
   * Absent in indexes written before version 3 (then taken from the files found).
   */
  shards?: string[];
}

const EMPTY_SHARD: ShardData = { rows: [] };

export class ShardFiles {
  readonly recordsDir: string;
  private readonly lows: Low<ShardData>[] = [];
  private readonly meta: Low<MetaFile>;
  /** Shards whose file exists (as far as this index knows): what meta.json lists. */
  private readonly onDisk = new Set<number>();
  /** Shards written since the last noteWritten (new ones go into meta.json's list). */
  private readonly written = new Set<number>();
  /** meta.json must be (re)written by the next flush. */
  private metaDirty = false;

  constructor(
    private readonly dir: string,
    private readonly state: IndexState,
    private readonly diagnostics: IndexDiagnostics,
    private readonly opts: { now: () => Date; writeConcurrency: number },
  ) {
    this.recordsDir = join(dir, 'records');
    for (let i = 0; i < SHARD_COUNT; i++) {
      this.lows.push(new Low<ShardData>(new DurableDataFile(this.shardPath(i), SHARD_FORMAT, { syncDir: false }), EMPTY_SHARD));
    }
    const meta: MetaFile = { schemaVersion: SCHEMA_VERSION, shardDigits: SHARD_DIGITS, createdAt: opts.now().toISOString() };
    this.meta = new Low<MetaFile>(new DurableJSONFile(join(dir, 'meta.json')), meta);
  }

  shardPath(i: number): string {
    return join(this.recordsDir, `${shardName(i)}.jsonl`);
  }

  /** meta.json as found (undefined when missing, or damaged and moved aside). */
  readMeta(recovery: Recovery): Promise<MetaFile | undefined> {
    return readOrRecover(this.meta.adapter as DurableJSONFile<MetaFile>, isMeta, recovery);
  }

  /** Take the meta.json read at open: refused when written by a newer version; marked with this version otherwise. */
  async adoptMeta(meta: MetaFile): Promise<void> {
    if (meta.schemaVersion > SCHEMA_VERSION) {
      throw new MediaCacheError('E_UNAVAILABLE', `index ${this.dir} has schemaVersion ${meta.schemaVersion}; this version reads up to ${SCHEMA_VERSION}`);
    }
    if (meta.shardDigits !== SHARD_DIGITS) {
      throw new MediaCacheError('E_UNAVAILABLE', `index ${this.dir} uses ${meta.shardDigits}-digit shards; expected ${SHARD_DIGITS}`);
    }
    this.meta.data = meta;
    if (meta.schemaVersion < SCHEMA_VERSION) {
      // Marked before anything is journaled: an older reader must refuse
      // this index rather than read its shards without the journal.
      this.meta.data = { ...meta, schemaVersion: SCHEMA_VERSION };
      await this.meta.write();
    }
  }

  /** The shard names meta.json lists (undefined when it has no list). */
  get listed(): string[] | undefined {
    return this.meta.data.shards;
  }

  /** At open: the shard files found on disk. */
  notePresent(shards: Iterable<number>): void {
    for (const i of shards) this.onDisk.add(i);
    this.meta.data = { ...this.meta.data, shards: this.namesOnDisk() };
  }

  isPresent(i: number): boolean {
    return this.onDisk.has(i);
  }

  markMetaDirty(): void {
    this.metaDirty = true;
  }

  get metaNeedsWrite(): boolean {
    return this.metaDirty;
  }

  /** Write meta.json when marked dirty; true when it was written. Stays dirty when the write fails. */
  async writeMetaIfDirty(): Promise<boolean> {
    if (!this.metaDirty) return false;
    this.metaDirty = false;
    try {
      await this.meta.write();
    } catch (e) {
      this.metaDirty = true;
      throw e;
    }
    return true;
  }

  /**
   * Write each shard in `todo` once from memory (temp + fsync + rename, then
   * one fsync of records/ for all); returns the shards that may not be durable
   * and the errors. One shard is serialized per event-loop turn at most.
   */
  async write(todo: number[]): Promise<{ failed: number[]; errors: unknown[] }> {
    const failed = new Set<number>();
    const errors: unknown[] = [];
    if (todo.length === 0) return { failed: [], errors };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const i = todo[next++];
        const low = this.lows[i];
        // Low.write() hands data to the adapter, which serializes before its
        // first await: the bytes are the shard as of this line.
        low.data = { rows: this.state.shardRows(i) };
        try {
          await low.write();
          this.written.add(i);
          this.diagnostics.shardWrites++;
        } catch (e) {
          failed.add(i);
          errors.push(e);
        } finally {
          low.data = EMPTY_SHARD;
        }
      }
    };
    await Promise.all(Array.from({ length: this.opts.writeConcurrency }, worker));
    // Shards skip their own directory fsync: one for the whole batch makes every
    // rename above durable (all shards live in one directory).
    try {
      await fsyncDir(this.recordsDir);
    } catch (e) {
      for (const i of todo) failed.add(i);
      errors.push(e);
    }
    return { failed: [...failed], errors };
  }

  /**
   * After shard writes: list newly created shard files in meta.json (written
   * after the shards, so meta never lists a file that was never written).
   */
  async noteWritten(): Promise<void> {
    for (const i of this.written) this.onDisk.add(i);
    this.written.clear();
    const names = this.namesOnDisk();
    const listed = this.meta.data.shards;
    if (listed && listed.length === names.length && listed.every((n, k) => n === names[k])) return;
    this.meta.data = { ...this.meta.data, shards: names };
    await this.meta.write();
  }

  /** records/ vanished: recreate it; no shard file is there any more. */
  async recreateRecordsDir(): Promise<void> {
    await mkdir(this.recordsDir, { recursive: true });
    this.onDisk.clear();
  }

  /**
   * The index dir vanished: recreate it with a meta.json listing no shard
   * (each is listed again once rewritten).
   */
  async recreate(): Promise<void> {
    await this.recreateRecordsDir();
    this.written.clear();
    this.meta.data = { ...this.meta.data, shards: [] };
    await this.meta.write();
    this.metaDirty = false;
  }

  /** Names of the shard files on disk, sorted (meta.json's list). */
  private namesOnDisk(): string[] {
    return [...this.onDisk].sort((a, b) => a - b).map(shardName);
  }
}

function isMeta(d: unknown): d is MetaFile {
  const m = d as MetaFile;
  return typeof d === 'object' && d !== null && Number.isInteger(m.schemaVersion) && Number.isInteger(m.shardDigits);
}
