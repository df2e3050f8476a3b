/**
 * A strict reader of zip archives whose entries are stored (not compressed), as PyTorch's
 * `torch.save` writes them. The input is untrusted: every offset and size is checked against the
 * file before anything is read or allocated, and the archive must be well-formed.
 *
 * - The end-of-central-directory record must end the file exactly (its comment length says how
 *   far); ZIP64 records are followed where the 32-bit fields are saturated.
 * - One disk only; the central directory must be exactly as long as it says and hold exactly the
 *   number of entries it says; names are UTF-8 and unique.
 * - Each local header must repeat its entry's name and method; entries may not overlap each other
 *   or the central directory (overlapping entries are the classic zip-bomb and polyglot trick).
 * - Stored entries only: deflate is refused (PT_ZIP_COMPRESSED) rather than inflated, encryption
 *   is refused; each entry's CRC-32 is checked when it is read.
 *
 * Pure: reads through a ByteSource, so a multi-GB file is never held in memory.
 */
import { bytesArgument, PonderError, stringArgument } from '../errors.js';

/** Random access to the bytes of a file (or a buffer). */
export interface ByteSource {
  /** the file name for messages */
  readonly label: string;
  readonly size: number;
  /** exactly `length` bytes at `offset`; the caller keeps within [0, size) */
  read(offset: number, length: number): Uint8Array;
}

export function bytesSource(bytes: Uint8Array, label = '<buffer>'): ByteSource {
  bytes = bytesArgument(bytes, 'bytesSource bytes');
  stringArgument(label, 'bytesSource label');
  return { label, size: bytes.byteLength, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

export interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
  /** file offset of the entry's bytes */
  readonly dataOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const MAX_COMMENT = 0xffff;
/** Entries are read in chunks of this size when their CRC is checked. */
const CHUNK = 16 << 20;

function zipError(source: ByteSource, what: string, hint = 'the file is truncated or corrupt; download it again'): PonderError {
  return new PonderError('PT_ZIP', `${source.label}: ${what}`, { path: source.label, hint });
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A u64 read as a number, refused above 2^53 (no real archive is that large). */
function u64(dv: DataView, at: number, source: ByteSource, what: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw zipError(source, `${what} is ${v}, beyond any file`);
  return Number(v);
}

export class ZipArchive {
  /** in central-directory order */
  readonly entries: ReadonlyMap<string, ZipEntry>;
  private readonly checked = new Set<string>();

  constructor(readonly source: ByteSource) {
    this.entries = readCentralDirectory(source);
  }

  /** Checks the entry's CRC-32 once (reading it in chunks); PT_ZIP_CRC when it does not match. */
  verify(entry: ZipEntry): void {
    if (this.checked.has(entry.name)) return;
    let crc = 0xffffffff;
    for (let done = 0; done < entry.size; done += CHUNK) {
      crc = crc32Update(crc, this.source.read(entry.dataOffset + done, Math.min(CHUNK, entry.size - done)));
    }
    crc = (crc ^ 0xffffffff) >>> 0;
    if (crc !== entry.crc32) {
      throw new PonderError('PT_ZIP_CRC', `${this.source.label}: entry ${entry.name} is corrupt (CRC-32 ${hex(crc)}, the archive says ${hex(entry.crc32)})`, {
        path: this.source.label, hint: 'the file was damaged in transfer or on disk; download it again',
      });
    }
    this.checked.add(entry.name);
  }

  /** `length` bytes at `offset` within the entry, after its CRC checked out. */
  read(entry: ZipEntry, offset = 0, length = entry.size - offset): Uint8Array {
    if (!(offset >= 0 && length >= 0 && offset + length <= entry.size)) throw new Error(`ZipArchive.read: [${offset}, ${offset + length}) is outside ${entry.name} (${entry.size} bytes)`);
    this.verify(entry);
    return this.source.read(entry.dataOffset + offset, length);
  }
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

function findEndRecord(source: ByteSource): number {
  if (source.size < 22) throw zipError(source, `${source.size} bytes is too short for a zip archive`);
  const tailLength = Math.min(source.size, 22 + MAX_COMMENT);
  const tailStart = source.size - tailLength;
  const tail = source.read(tailStart, tailLength);
  const dv = view(tail);
  // The last record whose comment runs exactly to the end of the file.
  for (let at = tailLength - 22; at >= 0; at--) {
    if (dv.getUint32(at, true) === EOCD_SIG && dv.getUint16(at + 20, true) === tailLength - at - 22) return tailStart + at;
  }
  throw zipError(source, 'has no end-of-central-directory record (not a zip archive, or truncated)');
}

function readCentralDirectory(source: ByteSource): Map<string, ZipEntry> {
  const eocd = findEndRecord(source);
  const e = view(source.read(eocd, 22));
  const disk = e.getUint16(4, true), cdDisk = e.getUint16(6, true);
  let countHere = e.getUint16(8, true), count = e.getUint16(10, true);
  let cdSize = e.getUint32(12, true), cdOffset = e.getUint32(16, true);
  let cdLimit = eocd; // the directory must end before the record that describes it
  if (countHere === 0xffff || count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocd < 20) throw zipError(source, 'says it is ZIP64 but has no ZIP64 locator');
    const loc = view(source.read(eocd - 20, 20));
    if (loc.getUint32(0, true) !== ZIP64_LOCATOR_SIG) throw zipError(source, 'says it is ZIP64 but has no ZIP64 locator');
    if (loc.getUint32(4, true) !== 0 || loc.getUint32(16, true) !== 1) throw zipError(source, 'is a multi-disk archive', 'join the parts into one file');
    const recordAt = u64(loc, 8, source, 'the ZIP64 record offset');
    if (recordAt + 56 > eocd - 20) throw zipError(source, `has its ZIP64 record at ${recordAt}, beyond its locator`);
    const r = view(source.read(recordAt, 56));
    if (r.getUint32(0, true) !== ZIP64_EOCD_SIG) throw zipError(source, `has no ZIP64 end record at ${recordAt}`);
    if (r.getUint32(16, true) !== 0 || r.getUint32(20, true) !== 0) throw zipError(source, 'is a multi-disk archive', 'join the parts into one file');
    countHere = u64(r, 24, source, 'the entry count');
    count = u64(r, 32, source, 'the entry count');
    cdSize = u64(r, 40, source, 'the central directory size');
    cdOffset = u64(r, 48, source, 'the central directory offset');
    cdLimit = recordAt;
  } else if (disk !== 0 || cdDisk !== 0) {
    throw zipError(source, 'is a multi-disk archive', 'join the parts into one file');
  }
  if (countHere !== count) throw zipError(source, `says it has ${countHere} entries on this disk but ${count} in all`);
  if (cdOffset + cdSize > cdLimit) throw zipError(source, `has its central directory at [${cdOffset}, ${cdOffset + cdSize}), past its end record at ${cdLimit}`);
  if (count * 46 > cdSize) throw zipError(source, `says it has ${count} entries, more than a ${cdSize}-byte central directory can hold`);

  const cd = source.read(cdOffset, cdSize);
  const dv = view(cd);
  const entries = new Map<string, ZipEntry>();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let at = 0;
  for (let i = 0; i < count; i++) {
    const where = `central directory entry ${i}`;
    if (at + 46 > cdSize || dv.getUint32(at, true) !== CENTRAL_SIG) throw zipError(source, `${where} is missing or malformed`);
    const flags = dv.getUint16(at + 8, true), method = dv.getUint16(at + 10, true);
    const crc32 = dv.getUint32(at + 16, true);
    let compressed = dv.getUint32(at + 20, true), size = dv.getUint32(at + 24, true);
    const nameLength = dv.getUint16(at + 28, true), extraLength = dv.getUint16(at + 30, true), commentLength = dv.getUint16(at + 32, true);
    const diskStart = dv.getUint16(at + 34, true);
    let localOffset = dv.getUint32(at + 42, true);
    const end = at + 46 + nameLength + extraLength + commentLength;
    if (end > cdSize) throw zipError(source, `${where} runs past the central directory`);
    let name: string;
    try {
      name = decoder.decode(cd.subarray(at + 46, at + 46 + nameLength));
    } catch {
      throw zipError(source, `${where} has a name that is not UTF-8`);
    }
    // ZIP64 extra field: the saturated 32-bit values, in this order
    const extra = cd.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength);
    if (size === 0xffffffff || compressed === 0xffffffff || localOffset === 0xffffffff || diskStart === 0xffff) {
      const z = zip64Extra(extra);
      if (!z) throw zipError(source, `entry ${name} needs a ZIP64 extra field and has none`);
      let k = 0;
      const next = (what: string): number => {
        if (k + 8 > z.byteLength) throw zipError(source, `entry ${name} has a ZIP64 extra field without its ${what}`);
        const v = u64(view(z), k, source, `entry ${name}'s ${what}`);
        k += 8;
        return v;
      };
      if (size === 0xffffffff) size = next('size');
      if (compressed === 0xffffffff) compressed = next('compressed size');
      if (localOffset === 0xffffffff) localOffset = next('offset');
    }
    if (diskStart !== 0 && diskStart !== 0xffff) throw zipError(source, 'is a multi-disk archive', 'join the parts into one file');
    if (flags & 1) throw zipError(source, `entry ${name} is encrypted`, 'ponder reads only unencrypted checkpoints');
    if (method === 8) {
      throw new PonderError('PT_ZIP_COMPRESSED', `${source.label}: entry ${name} is deflate-compressed; torch.save stores entries uncompressed`, {
        path: source.label, hint: 'the archive was re-zipped; load it in PyTorch and torch.save it again (or re-zip it with `zip -0`)',
      });
    }
    if (method !== 0) throw zipError(source, `entry ${name} uses compression method ${method}; only stored entries are read`, 'torch.save writes stored entries; save the checkpoint again');
    if (compressed !== size) throw zipError(source, `entry ${name} is stored but its sizes differ (${compressed} compressed, ${size} uncompressed)`);
    if (entries.has(name)) throw zipError(source, `has two entries named ${name}`, 'the archive is corrupt or crafted; each name must appear once');
    entries.set(name, { name, method, size, crc32, localHeaderOffset: localOffset, dataOffset: -1 });
    at = end;
  }
  if (at !== cdSize) throw zipError(source, `has ${cdSize - at} unexplained bytes at the end of its central directory`);

  // Local headers: each repeats its name; the data follows; nothing overlaps.
  const located = [...entries.values()].map((entry) => {
    if (entry.localHeaderOffset + 30 > cdOffset) throw zipError(source, `entry ${entry.name} starts at ${entry.localHeaderOffset}, inside or past the central directory`);
    const h = view(source.read(entry.localHeaderOffset, 30));
    if (h.getUint32(0, true) !== LOCAL_SIG) throw zipError(source, `entry ${entry.name} has no local header at ${entry.localHeaderOffset}`);
    const nameLength = h.getUint16(26, true), extraLength = h.getUint16(28, true);
    const dataOffset = entry.localHeaderOffset + 30 + nameLength + extraLength;
    if (dataOffset + entry.size > cdOffset) throw zipError(source, `entry ${entry.name} runs into the central directory`);
    const localName = source.read(entry.localHeaderOffset + 30, nameLength);
    if (new TextDecoder().decode(localName) !== entry.name || h.getUint16(8, true) !== entry.method) {
      throw zipError(source, `entry ${entry.name}'s local header disagrees with the central directory`, 'the archive is corrupt or crafted');
    }
    return { ...entry, dataOffset };
  });
  const byOffset = [...located].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1];
    if (byOffset[i].localHeaderOffset < prev.dataOffset + prev.size) {
      throw zipError(source, `entries ${prev.name} and ${byOffset[i].name} overlap`, 'the archive is corrupt or crafted');
    }
  }
  return new Map(located.map((entry) => [entry.name, entry]));
}

/** The data of the ZIP64 extra field (header id 1), or undefined. */
function zip64Extra(extra: Uint8Array): Uint8Array | undefined {
  const dv = view(extra);
  for (let at = 0; at + 4 <= extra.byteLength;) {
    const id = dv.getUint16(at, true), length = dv.getUint16(at + 2, true);
    if (at + 4 + length > extra.byteLength) return undefined;
    if (id === 1) return extra.subarray(at + 4, at + 4 + length);
    at += 4 + length;
  }
  return undefined;
}

// CRC-32 (IEEE 802.3, reflected 0xEDB88320), slicing by 4.
const CRC_TABLES = (() => {
  const t = new Uint32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let s = 1; s < 4; s++) t[s * 256 + n] = (t[(s - 1) * 256 + n] >>> 8) ^ t[t[(s - 1) * 256 + n] & 0xff];
  }
  return t;
})();

/** Continues a CRC-32 (start with 0xffffffff, finish with ^ 0xffffffff). */
export function crc32Update(crc: number, bytes: Uint8Array): number {
  const t = CRC_TABLES;
  let c = crc >>> 0;
  let i = 0;
  const n4 = bytes.length & ~3;
  for (; i < n4; i += 4) {
    c ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    c = t[768 + (c & 0xff)] ^ t[512 + ((c >>> 8) & 0xff)] ^ t[256 + ((c >>> 16) & 0xff)] ^ t[c >>> 24];
  }
  for (; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}
