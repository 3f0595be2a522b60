import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import { TransferError } from './errors';

/*
 * A small streaming tar (POSIX ustar, with pax extended headers for long names and large sizes): what
 * OCI image layouts and `docker save` archives are. Entries stream through; nothing holds a file whole.
 */

const BLOCK = 512;
const END_OF_ARCHIVE = Buffer.alloc(BLOCK * 2);
// ustar's 12-byte octal size field holds at most 8 GiB - 1.
const MAX_OCTAL_SIZE = 0o77777777777;

/** Writes a tar file entry by entry; `finish` ends the archive. */
export class TarWriter {
  private position = 0;

  private constructor(private readonly handle: fsp.FileHandle) {}

  static async create(file: string): Promise<TarWriter> {
    return new TarWriter(await fsp.open(file, 'w'));
  }

  async addDirectory(name: string): Promise<void> {
    await this.write(header(name.endsWith('/') ? name : `${name}/`, 0, '5', 0o755));
  }

  /** A regular file of exactly `size` bytes from `source` (a file's path, or bytes). */
  async addFile(name: string, source: string | Buffer, size: number): Promise<void> {
    await this.write(header(name, size, '0', 0o644));
    let written = 0;
    if (Buffer.isBuffer(source)) {
      await this.write(source);
      written = source.length;
    } else {
      for await (const chunk of fs.createReadStream(source, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
        written += chunk.length;
        if (written > size) break;
        await this.write(chunk);
      }
    }
    if (written !== size) throw new Error(`${name}: expected ${size} bytes, read ${written}`);
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (padding > 0) await this.write(Buffer.alloc(padding));
  }

  /** Ends the archive (two zero blocks), fsyncs and closes the file. */
  async finish(): Promise<void> {
    await this.write(END_OF_ARCHIVE);
    await this.handle.sync();
    await this.handle.close();
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }

  private async write(bytes: Buffer): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, offset, bytes.length - offset, this.position);
      offset += bytesWritten;
      this.position += bytesWritten;
    }
  }
}

/**
 * Writes the tar file `target` whole or not at all: `fill` adds the entries to a temporary file beside it,
 * which is finished (fsynced) and renamed into place; on any error it is removed and the error rethrown.
 * `temporary` is that file's path, for scratch files of the caller's own beside it.
 */
export async function writeTarFile(target: string, fill: (tar: TarWriter, temporary: string) => Promise<void>): Promise<void> {
  const temporary = `${target}.${randomUUID()}.partial`;
  const tar = await TarWriter.create(temporary);
  try {
    await fill(tar, temporary);
    await tar.finish();
    await fsp.rename(temporary, target);
  } catch (error) {
    await tar.abort();
    await fsp.rm(temporary, { force: true });
    throw error;
  }
}

/** A ustar header, preceded by a pax header when the name or the size does not fit ustar's fields. */
function header(name: string, size: number, type: '0' | '5', mode: number): Buffer {
  const pax: Record<string, string> = {};
  const split = splitName(name);
  if (!split) pax.path = name;
  if (size > MAX_OCTAL_SIZE) pax.size = String(size);
  const block = ustarBlock(split ?? { prefix: '', name: asciiName(name) }, pax.size ? 0 : size, type, mode);
  if (Object.keys(pax).length === 0) return block;
  const records = Buffer.from(Object.entries(pax).map(([key, value]) => paxRecord(key, value)).join(''));
  const paxHeader = ustarBlock({ prefix: '', name: 'PaxHeader' }, records.length, 'x', 0o644);
  const padding = Buffer.alloc((BLOCK - (records.length % BLOCK)) % BLOCK);
  return Buffer.concat([paxHeader, records, padding, block]);
}

/** `<length> <key>=<value>\n`, where the length counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length++;
  return `${length}${body}`;
}

/** ustar's name (100 bytes) and prefix (155) fields, or null when the name needs a pax header. */
function splitName(name: string): { prefix: string; name: string } | null {
  if (!/^[\x20-\x7e]*$/.test(name)) return null;
  if (name.length <= 100) return { prefix: '', name };
  for (let at = name.indexOf('/'); at >= 0; at = name.indexOf('/', at + 1)) {
    if (at <= 155 && name.length - at - 1 <= 100 && name.length - at - 1 > 0) return { prefix: name.slice(0, at), name: name.slice(at + 1) };
  }
  return null;
}

function asciiName(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, '_').slice(-100);
}

function ustarBlock(name: { prefix: string; name: string }, size: number, type: string, mode: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name.name, 0, 100, 'utf8');
  block.write(octal(mode, 8), 100, 'ascii');
  block.write(octal(0, 8), 108, 'ascii');
  block.write(octal(0, 8), 116, 'ascii');
  block.write(octal(size, 12), 124, 'ascii');
  block.write(octal(0, 12), 136, 'ascii');
  block.write(' '.repeat(8), 148, 'ascii');
  block.write(type, 156, 'ascii');
  block.write('ustar\x0000', 257, 'ascii');
  block.write(name.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

// --- reading ---------------------------------------------------------------------------------

export interface TarEntry {
  /** As written in the archive (pax `path` when there is one), without a leading `./`. */
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';
  size: number;
  /** Symbolic and hard links: their target. */
  linkName: string;
  /** A file's bytes; must be consumed (or left, and the reader skips them) before the next entry. */
  body: AsyncIterable<Buffer>;
}

/** Pulls exact byte counts from a stream of chunks. */
class ByteReader {
  private buffered: Buffer[] = [];
  private bufferedLength = 0;
  private done = false;
  offset = 0;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** Up to `max` bytes (fewer only at the end of the input), or an empty buffer at the end. */
  async some(max: number): Promise<Buffer> {
    if (this.bufferedLength === 0 && !this.done) {
      const next = await this.source.next();
      if (next.done) this.done = true;
      else {
        this.buffered.push(next.value);
        this.bufferedLength += next.value.length;
      }
    }
    if (this.bufferedLength === 0) return Buffer.alloc(0);
    const first = this.buffered[0];
    const taken = first.length <= max ? first : first.subarray(0, max);
    if (taken === first) this.buffered.shift();
    else this.buffered[0] = first.subarray(max);
    this.bufferedLength -= taken.length;
    this.offset += taken.length;
    return taken;
  }

  /** Exactly `length` bytes, or what there is when the input ends first. */
  async exactly(length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < length) {
      const part = await this.some(length - got);
      if (part.length === 0) break;
      parts.push(part);
      got += part.length;
    }
    return Buffer.concat(parts);
  }
}

/**
 * The entries of a tar stream, in order. A truncated archive, a bad header checksum or a body that ends
 * early throws a TransferError naming the entry.
 */
export async function* readTar(source: Readable): AsyncGenerator<TarEntry> {
  const reader = new ByteReader((source as AsyncIterable<Buffer>)[Symbol.asyncIterator]());
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const headerOffset = reader.offset;
    const block = await reader.exactly(BLOCK);
    if (block.length === 0) throw new TransferError('truncated archive: it ends without the end-of-archive marker');
    if (block.length < BLOCK) throw new TransferError(`truncated archive: a header at byte ${headerOffset} is cut short`);
    if (block.every((byte) => byte === 0)) return;
    verifyChecksum(block, headerOffset);
    const typeFlag = String.fromCharCode(block[156] || 0x30);
    let size = parseNumber(block.subarray(124, 136));
    if (pax.size !== undefined) size = Number(pax.size);
    const prefix = field(block.subarray(345, 500));
    const ustarName = field(block.subarray(0, 100));
    const rawName = pax.path ?? longName ?? (prefix ? `${prefix}/${ustarName}` : ustarName);
    const linkName = pax.linkpath ?? longLink ?? field(block.subarray(157, 257));
    if (!Number.isSafeInteger(size) || size < 0) throw new TransferError(`${rawName}: invalid size in the tar header`);

    const padded = size + ((BLOCK - (size % BLOCK)) % BLOCK);
    if (typeFlag === 'x' || typeFlag === 'g' || typeFlag === 'L' || typeFlag === 'K') {
      if (size > 1024 * 1024) throw new TransferError(`${rawName}: extended header of ${size} bytes`);
      const data = await reader.exactly(padded);
      if (data.length < padded) throw new TransferError(`truncated archive: the extended header at byte ${headerOffset} is cut short`);
      const content = data.subarray(0, size);
      if (typeFlag === 'x') pax = parsePax(content, headerOffset);
      else if (typeFlag === 'L') longName = field(content);
      else if (typeFlag === 'K') longLink = field(content);
      continue;
    }
    pax = {};
    longName = undefined;
    longLink = undefined;

    const name = rawName.replace(/^(\.\/)+/, '');
    const type =
      typeFlag === '0' || typeFlag === '7' ? 'file' : typeFlag === '5' ? 'directory' : typeFlag === '2' ? 'symlink' : typeFlag === '1' ? 'hardlink' : 'other';
    const bodySize = type === 'file' || type === 'other' ? size : 0;
    let consumed = 0;
    const body = (async function* () {
      while (consumed < bodySize) {
        const chunk = await reader.some(bodySize - consumed);
        if (chunk.length === 0) throw new TransferError(`truncated archive: ${name} ends after ${consumed} of its ${bodySize} bytes`);
        consumed += chunk.length;
        yield chunk;
      }
    })();
    yield { name, type, size: bodySize, linkName, body };
    // Whatever the consumer left of the body, and the padding to the next block.
    while (consumed < bodySize) {
      const chunk = await reader.some(bodySize - consumed);
      if (chunk.length === 0) throw new TransferError(`truncated archive: ${name} ends after ${consumed} of its ${bodySize} bytes`);
      consumed += chunk.length;
    }
    const padding = (bodySize === 0 ? 0 : padded - size) + (type === 'file' || type === 'other' ? 0 : padded);
    const skipped = await reader.exactly(padding);
    if (skipped.length < padding) throw new TransferError(`truncated archive: ${name} is cut short`);
  }
}

function verifyChecksum(block: Buffer, offset: number): void {
  const stored = parseNumber(block.subarray(148, 156));
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  if (stored !== sum) throw new TransferError(`not a tar archive, or a corrupt one: bad header checksum at byte ${offset}`);
}

/** Octal, or GNU's base-256 for large values. */
function parseNumber(bytes: Buffer): number {
  if (bytes[0] & 0x80) {
    let value = 0;
    for (let i = 1; i < bytes.length; i++) value = value * 256 + bytes[i];
    return value;
  }
  const text = field(bytes).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function field(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString('utf8');
}

function parsePax(content: Buffer, offset: number): Record<string, string> {
  const records: Record<string, string> = {};
  let at = 0;
  while (at < content.length) {
    const space = content.indexOf(0x20, at);
    const length = Number(content.subarray(at, space).toString('ascii'));
    if (space < 0 || !Number.isSafeInteger(length) || length <= 0 || at + length > content.length) {
      throw new TransferError(`corrupt pax header at byte ${offset}`);
    }
    const record = content.subarray(space + 1, at + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    records[record.slice(0, equals)] = record.slice(equals + 1);
    at += length;
  }
  return records;
}
