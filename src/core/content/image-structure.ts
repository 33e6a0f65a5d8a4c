/**
 * Does an image's declared structure fit its body? Checked while streaming,
 * beside the hashes (download-sink.ts), so that garbage behind a valid image
 * header is refused instead of being stored as that image.
 *
 * What is checked (cheap: a jump from one declared length to the next, never
 * a decode):
 *   PNG   the chunks, by their declared lengths, up to IEND (each chunk type
 *         four ASCII letters);
 *   GIF   the blocks (extensions, image descriptors with their colour tables
 *         and data sub-blocks) up to the trailer 0x3B;
 *   JPEG  the marker segments by their lengths and the entropy-coded data
 *         (stuffed 0xFF00, restart markers) up to EOI 0xFFD9;
 *   WebP  the RIFF size fits the body.
 * Bytes after the end of the image (after IEND, the trailer, EOI, or the RIFF
 * size) are allowed: appended metadata is common and harmless. Other types
 * are identified by their leading bytes only (sniff.ts).
 */

/** Why the body is not the image its header says, or undefined. */
export type StructureProblem = string | undefined;

interface Walker {
  /** Feed bytes; returns a problem as soon as one is certain. */
  update(b: Buffer): StructureProblem;
  /** The body ended: a problem when the image is incomplete. */
  finish(): StructureProblem;
}

const PNG_SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Streams bytes and checks the image structure their first bytes announce. */
export class ImageStructureCheck {
  private lead = Buffer.alloc(0);
  private walker: Walker | undefined;
  private off = false;

  update(chunk: Buffer): StructureProblem {
    if (this.off) return undefined;
    if (this.walker) return this.walker.update(chunk);
    this.lead = Buffer.concat([this.lead, chunk]);
    if (this.lead.length < 12) return undefined;
    this.walker = pickWalker(this.lead);
    if (!this.walker) {
      this.off = true;
      return undefined;
    }
    const b = this.lead;
    this.lead = Buffer.alloc(0);
    return this.walker.update(b);
  }

  finish(): StructureProblem {
    if (this.off) return undefined;
    if (!this.walker) {
      // Fewer than 12 bytes in all: only a tiny image could be that short.
      this.walker = pickWalker(this.lead);
      if (!this.walker) return undefined;
      const p = this.walker.update(this.lead);
      if (p) return p;
    }
    return this.walker.finish();
  }
}

function pickWalker(b: Buffer): Walker | undefined {
  if (b.length >= 8 && b.subarray(0, 8).equals(PNG_SIG)) return new PngWalker();
  const six = b.toString('latin1', 0, 6);
  if (six === 'GIF87a' || six === 'GIF89a') return new GifWalker();
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return new JpegWalker();
  if (b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return new RiffWalker('WebP');
  return undefined;
}

/**
 * Shared machinery: skip a declared number of bytes, or collect a few header
 * bytes (which may straddle chunks) and hand them to `onBytes`.
 */
abstract class ByteWalker implements Walker {
  protected skip = 0;
  protected need = 0;
  protected done = false;
  /** The end is reached once `skip` runs out (the last bytes of a final chunk). */
  private ending = false;
  protected problem: StructureProblem;
  private got: number[] = [];

  update(b: Buffer): StructureProblem {
    let i = 0;
    while (i < b.length && !this.done && !this.problem) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, b.length - i);
        this.skip -= n;
        i += n;
        if (this.skip === 0 && this.ending) this.done = true;
        continue;
      }
      if (this.need === 0) {
        i = this.scan(b, i);
        continue;
      }
      this.got.push(b[i++]);
      if (this.got.length === this.need) {
        const bytes = this.got;
        this.got = [];
        this.need = 0;
        this.onBytes(bytes);
      }
    }
    return this.problem;
  }

  finish(): StructureProblem {
    return this.problem ?? (this.done ? undefined : this.incomplete());
  }

  /** The image ends after `n` more bytes. */
  protected endAfter(n: number): void {
    if (n === 0) this.done = true;
    this.skip = n;
    this.ending = true;
  }

  /** Collect `n` bytes, then onBytes(). */
  protected want(n: number): void {
    this.need = n;
  }

  protected fail(why: string): void {
    this.problem = why;
  }

  protected abstract onBytes(b: number[]): void;
  /** Free-running scan (JPEG entropy data); returns the next index. Default: nothing to scan. */
  protected scan(_b: Buffer, i: number): number {
    this.fail('internal: nothing wanted');
    return i;
  }
  protected abstract incomplete(): string;
}

class PngWalker extends ByteWalker {
  constructor() {
    super();
    this.skip = 8; // signature
    this.want(8);
  }

  protected onBytes(h: number[]): void {
    const len = ((h[0] << 24) >>> 0) + (h[1] << 16) + (h[2] << 8) + h[3];
    for (let k = 4; k < 8; k++) {
      const c = h[k];
      if (!((c >= 65 && c <= 90) || (c >= 97 && c <= 122))) return this.fail('PNG chunk type is not four letters (not a PNG past its header)');
    }
    if (len > 0x7fffffff) return this.fail('PNG chunk length out of range');
    if (String.fromCharCode(h[4], h[5], h[6], h[7]) === 'IEND') return this.endAfter(len + 4); // its CRC
    this.skip = len + 4; // data + CRC
    this.want(8);
  }

  protected incomplete(): string {
    return 'PNG ends before its IEND chunk (truncated or not a PNG past its header)';
  }
}

type GifState = 'screen' | 'block' | 'extLabel' | 'subBlock' | 'descriptor' | 'lzwMin';

class GifWalker extends ByteWalker {
  private state: GifState = 'screen';

  constructor() {
    super();
    this.skip = 6; // signature + version
    this.want(7); // logical screen descriptor
  }

  protected onBytes(b: number[]): void {
    switch (this.state) {
      case 'screen':
      case 'descriptor': {
        // Packed fields: byte 4 of the screen descriptor, byte 8 of an image descriptor.
        const packed = this.state === 'screen' ? b[4] : b[8];
        // Global (screen) or local (descriptor) colour table: 3 * 2^(n+1) bytes.
        if (packed & 0x80) this.skip = 3 * (1 << ((packed & 7) + 1));
        this.state = this.state === 'screen' ? 'block' : 'lzwMin';
        return this.want(1);
      }
      case 'block':
        if (b[0] === 0x3b) {
          this.done = true;
          return;
        }
        if (b[0] === 0x21) {
          this.state = 'extLabel';
          return this.want(1);
        }
        if (b[0] === 0x2c) {
          this.state = 'descriptor';
          return this.want(9);
        }
        return this.fail(`GIF block starts with 0x${b[0].toString(16)} (not a GIF past its header)`);
      case 'extLabel':
      case 'lzwMin':
        this.state = 'subBlock';
        return this.want(1);
      case 'subBlock':
        if (b[0] === 0) this.state = 'block';
        else this.skip = b[0];
        return this.want(1);
    }
  }

  protected incomplete(): string {
    return 'GIF ends before its trailer (truncated or not a GIF past its header)';
  }
}

type JpegState = 'marker' | 'code' | 'length' | 'entropy' | 'entropyCode';

class JpegWalker extends ByteWalker {
  private state: JpegState = 'marker';
  private afterSos = false;

  constructor() {
    super();
    this.skip = 2; // SOI
    this.want(1);
  }

  protected onBytes(b: number[]): void {
    const c = b[0];
    switch (this.state) {
      case 'marker':
        if (c !== 0xff) return this.fail('JPEG segment does not start with a marker (not a JPEG past its header)');
        this.state = 'code';
        return this.want(1);
      case 'code':
      case 'entropyCode':
        return this.onMarker(c);
      case 'length': {
        const len = (b[0] << 8) | b[1];
        if (len < 2) return this.fail('JPEG segment length out of range');
        this.skip = len - 2;
        if (this.afterSos) {
          this.afterSos = false;
          this.state = 'entropy'; // scan data follows the SOS header
          return;
        }
        this.state = 'marker';
        return this.want(1);
      }
      default:
        return this.fail('internal: unexpected JPEG state');
    }
  }

  private onMarker(c: number): void {
    const inEntropy = this.state === 'entropyCode';
    if (c === 0xff) return this.want(1); // fill byte
    if (inEntropy && c === 0x00) {
      this.state = 'entropy'; // stuffed 0xFF data byte
      return;
    }
    if (c >= 0xd0 && c <= 0xd7) {
      // Restart marker: part of the scan data.
      if (inEntropy) this.state = 'entropy';
      else {
        this.state = 'marker';
        this.want(1);
      }
      return;
    }
    if (c === 0xd9) {
      this.done = true;
      return;
    }
    if (c === 0x01) {
      this.state = 'marker';
      return this.want(1);
    }
    if (c === 0xd8 || c === 0x00) return this.fail('JPEG marker out of place (not a JPEG past its header)');
    this.afterSos = c === 0xda;
    this.state = 'length';
    this.want(2);
  }

  /** Entropy-coded data: jump to the next 0xFF. */
  protected override scan(b: Buffer, i: number): number {
    if (this.state !== 'entropy') {
      this.fail('internal: unexpected JPEG state');
      return i;
    }
    const ff = b.indexOf(0xff, i);
    if (ff < 0) return b.length;
    this.state = 'entropyCode';
    this.want(1);
    return ff + 1;
  }

  protected incomplete(): string {
    return 'JPEG ends before its EOI marker (truncated or not a JPEG past its header)';
  }
}

/** RIFF (WebP): the size in the header must fit the body. */
class RiffWalker implements Walker {
  private seen = 0;
  private declared: number | undefined;

  constructor(private readonly name: string) {}

  update(b: Buffer): StructureProblem {
    if (this.declared === undefined && this.seen === 0 && b.length >= 8) this.declared = b.readUInt32LE(4) + 8;
    this.seen += b.length;
    return undefined;
  }

  finish(): StructureProblem {
    if (this.declared !== undefined && this.seen < this.declared) {
      return `${this.name} is shorter (${this.seen} bytes) than its RIFF header says (${this.declared})`;
    }
    return undefined;
  }
}
