/**
 * PDF: page count and encryption from the cross-reference data, read from
 * the tail like a viewer does: `startxref` -> the newest xref section (a
 * classic table or an xref stream) and its trailer (/Root, /Encrypt, /Prev)
 * -> the catalog -> its /Pages tree root -> /Count. Objects inside object
 * streams are found through their stream. Only the few objects needed are
 * read (classic table entries are fixed-size, so an entry is one seek).
 * When that path fails (a damaged xref, streams encrypted), a bounded scan
 * of the head and tail for the linearization dictionary's /N or the largest
 * /Type /Pages /Count answers instead.
 */
import { inflateSync } from 'node:zlib';
import { MetadataError, type MediaMetadata } from './types.js';
import type { RangeReader } from './reader.js';

const TAIL = 4096;
const MAX_SECTIONS = 32;
const MAX_STREAM = 8 * 1024 * 1024;
const MAX_INFLATED = 32 * 1024 * 1024;
const SCAN_BYTES = 4 * 1024 * 1024;

type Entry = { type: 1; offset: number } | { type: 2; stream: number; index: number };

interface Section {
  /** The trailer (or xref stream) dictionary. */
  dict: string;
  lookup(num: number): Promise<Entry | undefined | null>;
}

const num = (dict: string, key: string): number | undefined => {
  const m = new RegExp(`/${key}\\s+(\\d+)(?![\\d.])`).exec(dict);
  return m ? Number(m[1]) : undefined;
};
const ref = (dict: string, key: string): number | undefined => {
  const m = new RegExp(`/${key}\\s+(\\d+)\\s+\\d+\\s+R`).exec(dict);
  return m ? Number(m[1]) : undefined;
};

class Pdf {
  private sections: Section[] = [];
  private streams = new Map<number, Buffer>();
  constructor(readonly r: RangeReader) {}

  /** The newest trailer (or xref stream) dictionary; load() first. */
  get trailer(): string {
    return this.sections[0].dict;
  }

  async text(pos: number, len: number): Promise<string> {
    return (await this.r.read(pos, len)).toString('latin1');
  }

  /** The xref chain, newest section first. */
  async load(): Promise<void> {
    const tail = await this.text(Math.max(0, this.r.size - TAIL), TAIL);
    const m = /startxref\s+(\d+)/g;
    let off: number | undefined;
    for (let x = m.exec(tail); x; x = m.exec(tail)) off = Number(x[1]);
    const seen = new Set<number>();
    while (off !== undefined && this.sections.length < MAX_SECTIONS && !seen.has(off)) {
      seen.add(off);
      const s = await this.section(off);
      this.sections.push(s);
      const xrefStm = num(s.dict, 'XRefStm');
      if (xrefStm !== undefined && !seen.has(xrefStm)) {
        seen.add(xrefStm);
        this.sections.push(await this.section(xrefStm));
      }
      off = num(s.dict, 'Prev');
    }
    if (this.sections.length === 0) throw new MetadataError('no startxref');
  }

  private async section(off: number): Promise<Section> {
    const head = await this.text(off, 64);
    if (head.startsWith('xref')) return this.table(off);
    if (/^\d+\s+\d+\s+obj/.test(head)) return this.xrefStream(off);
    throw new MetadataError(`no xref at ${off}`);
  }

  /** A classic table: subsection headers are walked, entries read on demand. */
  private async table(off: number): Promise<Section> {
    const subs: Array<{ first: number; count: number; at: number }> = [];
    let p = off + 4;
    for (let i = 0; i < 10_000; i++) {
      const t = await this.text(p, 64);
      const m = /^\s*(\d+)\s+(\d+)[ \t]*\r?\n?/.exec(t);
      if (!m) break;
      const at = p + m[0].length;
      subs.push({ first: Number(m[1]), count: Number(m[2]), at });
      p = at + Number(m[2]) * 20;
    }
    const t = await this.text(p, 8192);
    const tr = /^\s*trailer\s*<<([\s\S]*?)>>\s*startxref/.exec(t) ?? /^\s*trailer\s*<<([\s\S]*)/.exec(t);
    if (!tr) throw new MetadataError('no trailer after the xref table');
    return {
      dict: tr[1],
      lookup: async (n) => {
        const s = subs.find((x) => n >= x.first && n < x.first + x.count);
        if (!s) return undefined;
        const e = await this.text(s.at + (n - s.first) * 20, 20);
        const m = /^(\d{10}) (\d{5}) ([nf])/.exec(e);
        if (!m) throw new MetadataError(`bad xref entry for object ${n}`);
        return m[3] === 'n' ? { type: 1, offset: Number(m[1]) } : null;
      },
    };
  }

  private async xrefStream(off: number): Promise<Section> {
    const { dict, data } = await this.streamAt(off);
    const w = /\/W\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s*\]/.exec(dict);
    if (!w) throw new MetadataError('xref stream without /W');
    const widths = [Number(w[1]), Number(w[2]), Number(w[3])];
    const rowLen = widths[0] + widths[1] + widths[2];
    if (rowLen === 0 || widths.some((x) => x > 8)) throw new MetadataError('bad xref stream /W');
    const idx = /\/Index\s*\[([\d\s]*)\]/.exec(dict);
    const nums = idx ? idx[1].trim().split(/\s+/).map(Number) : [0, num(dict, 'Size') ?? 0];
    const field = (p: number, len: number, dflt: number): number => {
      if (len === 0) return dflt;
      let v = 0;
      for (let i = 0; i < len; i++) v = v * 256 + (data[p + i] ?? 0);
      return v;
    };
    return {
      dict,
      lookup: async (n) => {
        let row = 0;
        for (let i = 0; i + 1 < nums.length; i += 2) {
          const [first, count] = [nums[i], nums[i + 1]];
          if (n >= first && n < first + count) {
            const p = (row + n - first) * rowLen;
            if (p + rowLen > data.length) return undefined;
            const type = field(p, widths[0], 1);
            const a = field(p + widths[0], widths[1], 0);
            const b = field(p + widths[0] + widths[1], widths[2], 0);
            if (type === 1) return { type: 1, offset: a };
            if (type === 2) return { type: 2, stream: a, index: b };
            return null;
          }
          row += count;
        }
        return undefined;
      },
    };
  }

  private async entry(n: number): Promise<Entry | undefined> {
    for (const s of this.sections) {
      const e = await s.lookup(n);
      if (e !== undefined) return e ?? undefined;
    }
    return undefined;
  }

  /** The text of object `n` (its dictionary and anything up to `stream`/`endobj`). */
  async object(n: number, depth = 0): Promise<string> {
    const e = await this.entry(n);
    if (!e) throw new MetadataError(`object ${n} is not in the xref`);
    if (e.type === 1) {
      const t = await this.text(e.offset, 8192);
      const m = /^\s*(\d+)\s+\d+\s+obj\b([\s\S]*?)(?:\bstream\b|\bendobj\b|$)/.exec(t);
      if (!m || Number(m[1]) !== n) throw new MetadataError(`object ${n} is not at its xref offset`);
      return m[2];
    }
    if (depth > 0) throw new MetadataError('object stream inside an object stream');
    let data = this.streams.get(e.stream);
    if (!data) {
      const entry = await this.entry(e.stream);
      if (!entry || entry.type !== 1) throw new MetadataError(`object stream ${e.stream} not found`);
      const s = await this.streamAt(entry.offset, depth + 1);
      const first = num(s.dict, 'First');
      if (first === undefined) throw new MetadataError('object stream without /First');
      data = s.data;
      this.streams.clear(); // keep one inflated stream at a time
      this.streams.set(e.stream, data);
      (data as Buffer & { first?: number }).first = first;
    }
    const first = (data as Buffer & { first?: number }).first ?? 0;
    const header = data.toString('latin1', 0, Math.min(first, data.length)).trim().split(/\s+/).map(Number);
    const off = header[2 * e.index + 1];
    if (header[2 * e.index] !== n || off === undefined || !Number.isFinite(off)) throw new MetadataError(`object ${n} not in its object stream`);
    const nextOff = header[2 * e.index + 3];
    return data.toString('latin1', first + off, nextOff !== undefined ? first + nextOff : Math.min(data.length, first + off + 8192));
  }

  /** The dictionary and decoded data of the stream object at `off` (Flate and PNG-up predictors). */
  private async streamAt(off: number, depth = 0): Promise<{ dict: string; data: Buffer }> {
    const t = await this.text(off, 8192);
    const m = /^\s*\d+\s+\d+\s+obj\s*<<([\s\S]*?)>>\s*stream\r?\n/.exec(t);
    if (!m) throw new MetadataError(`no stream object at ${off}`);
    const dict = m[1];
    let len = num(dict, 'Length');
    const lenRef = ref(dict, 'Length');
    if (lenRef !== undefined) {
      if (depth > 1) throw new MetadataError('indirect /Length too deep');
      len = Number(/^\s*(\d+)/.exec(await this.object(lenRef, 1))?.[1]);
    }
    if (len === undefined || !Number.isFinite(len) || len > MAX_STREAM) throw new MetadataError('stream /Length missing or too large');
    const raw = await this.r.read(off + m[0].length, len);
    let data = raw;
    if (/\/Filter\s*\[?\s*\/FlateDecode/.test(dict)) {
      try {
        data = inflateSync(raw, { maxOutputLength: MAX_INFLATED, finishFlush: 2 /* Z_SYNC_FLUSH: tolerate a cut-off stream */ });
      } catch (e) {
        throw new MetadataError(`cannot inflate stream at ${off}: ${(e as Error).message}`);
      }
    } else if (/\/Filter/.test(dict)) throw new MetadataError('unsupported stream filter');
    const predictor = num(dict, 'Predictor') ?? 1;
    if (predictor >= 10) data = pngUp(data, num(dict, 'Columns') ?? 1);
    return { dict, data: Buffer.from(data) };
  }
}

/** Undo PNG row predictors (xref streams use Up; the others are handled for completeness). */
function pngUp(d: Buffer, columns: number): Buffer {
  const row = columns + 1;
  const rows = Math.floor(d.length / row);
  const out = Buffer.alloc(rows * columns);
  for (let r = 0; r < rows; r++) {
    const f = d[r * row];
    for (let c = 0; c < columns; c++) {
      const x = d[r * row + 1 + c];
      const up = r > 0 ? out[(r - 1) * columns + c] : 0;
      const left = c > 0 ? out[r * columns + c - 1] : 0;
      out[r * columns + c] = (f === 2 ? x + up : f === 1 ? x + left : f === 3 ? x + ((left + up) >> 1) : x) & 0xff;
    }
  }
  return out;
}

async function viaXref(pdf: Pdf): Promise<MediaMetadata> {
  await pdf.load();
  const trailer = pdf.trailer;
  const encrypted = /\/Encrypt\b/.test(trailer);
  const root = ref(trailer, 'Root');
  if (root === undefined) throw new MetadataError('trailer without /Root');
  const pages = ref(await pdf.object(root), 'Pages');
  if (pages === undefined) throw new MetadataError('catalog without /Pages');
  const count = num(await pdf.object(pages), 'Count');
  if (count === undefined) throw new MetadataError('page tree root without /Count');
  return { pageCount: count, encrypted };
}

/** Bounded scan: the linearization /N, else the largest /Type /Pages /Count in the head and tail. */
async function viaScan(r: RangeReader): Promise<MediaMetadata> {
  const head = (await r.read(0, SCAN_BYTES)).toString('latin1');
  const tail = r.size > SCAN_BYTES ? (await r.read(Math.max(SCAN_BYTES, r.size - SCAN_BYTES), SCAN_BYTES)).toString('latin1') : '';
  const m: MediaMetadata = { encrypted: /trailer[\s\S]*\/Encrypt\b|\/Type\s*\/XRef[^>]*\/Encrypt\b/.test(head + tail) };
  const lin = /<<[^>]*\/Linearized\s[^>]*>>/.exec(head.slice(0, 2048));
  const n = lin ? num(lin[0], 'N') : undefined;
  if (n !== undefined) return { ...m, pageCount: n };
  let max = 0;
  for (const text of [head, tail]) {
    const re = /\/Type\s*\/Pages\b[^]{0,512}?\/Count\s+(\d+)|\/Count\s+(\d+)[^]{0,512}?\/Type\s*\/Pages\b/g;
    let k = 0;
    for (let x = re.exec(text); x && k < 100_000; x = re.exec(text), k++) max = Math.max(max, Number(x[1] ?? x[2]));
  }
  if (max > 0) m.pageCount = max;
  return m;
}

export async function readPdf(r: RangeReader, onFallback?: (why: string) => void): Promise<MediaMetadata> {
  try {
    return await viaXref(new Pdf(r));
  } catch (e) {
    if (!(e instanceof MetadataError)) throw e;
    onFallback?.(e.message);
    return viaScan(r);
  }
}
