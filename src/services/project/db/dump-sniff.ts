/**
 * Detects what a database dump is from its content (never its name) and opens it as a stream of
 * the dump proper: PostgreSQL custom format (`pg_dump -Fc`) or plain SQL, either of them optionally
 * gzip-compressed. Anything else is refused with an error that names what was found.
 *
 * Only the first few KiB are read to decide; the returned stream yields the whole content
 * (decompressed when it was gzip), including the bytes that were sniffed. Memory stays bounded:
 * dumps are streamed, never held.
 */
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';

import { InvalidInputError } from '../../../core/errors.js';

export type DumpFormat = 'custom' | 'plain';
export type DumpCompression = 'none' | 'gzip';

export interface OpenedDump {
  format: DumpFormat;
  compression: DumpCompression;
  /** The whole dump (decompressed if it was gzip; a plain SQL dump without its UTF-8 BOM). */
  stream: Readable;
}

/** How many leading bytes are examined to decide what a dump is. */
export const SNIFF_BYTES = 8192;

/** What the leading bytes of a dump say it is. */
export type SniffResult =
  | { kind: 'custom' }
  | { kind: 'gzip' }
  | { kind: 'plain'; bom: boolean }
  | { kind: 'empty' }
  | { kind: 'refused'; what: Refusal };

export interface Refusal {
  /** Noun phrase naming what was found, e.g. "a zip archive", "bzip2-compressed data". */
  noun: string;
  /** Message when the dump itself is this (defaults to `the dump is <noun>`). */
  message?: string;
  hint: string;
}

const SUPPORTED =
  'divio imports PostgreSQL custom-format dumps (pg_dump -Fc) and plain SQL dumps, either optionally gzip-compressed';

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

function startsWith(head: Buffer, bytes: readonly number[], offset = 0): boolean {
  if (head.length < offset + bytes.length) return false;
  for (let i = 0; i < bytes.length; i++) if (head[offset + i] !== bytes[i]) return false;
  return true;
}

function ascii(text: string): number[] {
  return Array.from(text, (c) => c.charCodeAt(0));
}

function hexBytes(head: Buffer, count = 8): string {
  const shown = Array.from(head.subarray(0, count), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return head.length > count ? `${shown} ...` : shown;
}

function compressed(tool: string, command: string, extension: string): Refusal {
  return {
    noun: `${tool}-compressed data`,
    message: `the dump is compressed with ${tool}: decompress it first (\`${command}\`)`,
    hint: `e.g. \`${command}c dump.sql.${extension} | divio project import db -\`, or decompress the file and import the result; ${SUPPORTED}`,
  };
}

/** A NUL-terminated string field of a tar header. */
function tarField(head: Buffer, offset: number, length: number): string {
  const field = head.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('latin1');
}

/** Walks the tar headers that fit in `head`, looking for a PostgreSQL archive's `toc.dat`. */
function tarHoldsPgDump(head: Buffer): 'tar-format' | 'directory-format' | null {
  let offset = 0;
  while (offset + 512 <= head.length) {
    if (tarField(head, offset + 257, 5) !== 'ustar') break;
    const name = tarField(head, offset, 100);
    const prefix = tarField(head, offset + 345, 155);
    const path = prefix === '' ? name : `${prefix}/${name}`;
    if (path === 'toc.dat' || path === './toc.dat') return 'tar-format';
    if (path.endsWith('/toc.dat')) return 'directory-format';
    const size = Number.parseInt(tarField(head, offset + 124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) break;
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return null;
}

/**
 * Validates UTF-8. Returns the offset of the first invalid sequence, or -1. With `allowCut`, a
 * multi-byte character cut off by the end of `bytes` is accepted (the data continues).
 */
export function invalidUtf8Offset(bytes: Buffer, allowCut: boolean): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i;
    }
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return allowCut ? -1 : i;
      const cont = bytes[i + k]!;
      if ((cont & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cont & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}

function looksLikeUtf16(window: Buffer): 'le' | 'be' | null {
  const pairs = Math.min(32, Math.floor(window.length / 2));
  if (pairs < 2) return null;
  let le = true;
  let be = true;
  for (let p = 0; p < pairs; p++) {
    const a = window[2 * p]!;
    const b = window[2 * p + 1]!;
    const printable = (c: number) => c === 9 || c === 10 || c === 13 || (c >= 0x20 && c < 0x7f);
    if (!(b === 0 && printable(a))) le = false;
    if (!(a === 0 && printable(b))) be = false;
  }
  return le ? 'le' : be ? 'be' : null;
}

const UTF16_HINT =
  'convert it to UTF-8 first, e.g. `iconv -f UTF-16 -t UTF-8 dump.sql > dump-utf8.sql` (Windows PowerShell writes UTF-16 when pg_dump output is redirected with `>`; use `pg_dump -f FILE` instead)';

/**
 * Classifies the leading bytes of a dump. `ended` says whether `head` is the whole input (no more
 * bytes follow), which matters for inputs shorter than the sniff window.
 */
export function sniffDump(head: Buffer, ended: boolean): SniffResult {
  if (head.length === 0) return { kind: 'empty' };
  if (startsWith(head, ascii('PGDMP'))) return { kind: 'custom' };
  if (startsWith(head, [0x1f, 0x8b])) return { kind: 'gzip' };

  const refuse = (what: Refusal): SniffResult => ({ kind: 'refused', what });
  if (
    startsWith(head, [0x50, 0x4b, 0x03, 0x04]) ||
    startsWith(head, [0x50, 0x4b, 0x05, 0x06]) ||
    startsWith(head, [0x50, 0x4b, 0x07, 0x08])
  ) {
    return refuse({
      noun: 'a zip archive',
      message: 'the dump is a zip archive: extract it first (`unzip`)',
      hint: `extract the dump from the archive and import the extracted file; ${SUPPORTED}`,
    });
  }
  if (startsWith(head, ascii('BZh'))) return refuse(compressed('bzip2', 'bzip2 -d', 'bz2'));
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return refuse(compressed('xz', 'xz -d', 'xz'));
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return refuse(compressed('zstd', 'zstd -d', 'zst'));
  if (startsWith(head, [0x04, 0x22, 0x4d, 0x18])) return refuse(compressed('lz4', 'lz4 -d', 'lz4'));
  if (startsWith(head, [0x1f, 0x9d])) return refuse(compressed('compress', 'uncompress', 'Z'));
  if (startsWith(head, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) {
    return refuse({
      noun: 'a 7-Zip archive',
      message: 'the dump is a 7-Zip archive: extract it first (`7z x`)',
      hint: `extract the dump from the archive and import the extracted file; ${SUPPORTED}`,
    });
  }
  if (startsWith(head, ascii('ustar'), 257)) {
    const pg = tarHoldsPgDump(head);
    if (pg === 'tar-format') {
      return refuse({
        noun: 'a PostgreSQL tar-format dump (pg_dump -Ft)',
        hint: `convert it to plain SQL with \`pg_restore -f dump.sql FILE\`, or export again with \`pg_dump -Fc\`; ${SUPPORTED}`,
      });
    }
    if (pg === 'directory-format') {
      return refuse({
        noun: 'a tar archive of a PostgreSQL directory-format dump (pg_dump -Fd)',
        hint: `extract it and convert it with \`pg_restore -f dump.sql DIRECTORY\`, or export again with \`pg_dump -Fc\`; ${SUPPORTED}`,
      });
    }
    return refuse({
      noun: 'a tar archive',
      hint: `extract the dump from the archive and import the extracted file (a PostgreSQL directory- or tar-format dump must be converted with \`pg_restore -f dump.sql\` first); ${SUPPORTED}`,
    });
  }
  const notADump = (noun: string): SniffResult =>
    refuse({ noun, message: `the dump is ${noun}, not a database dump`, hint: `check that you picked the right file; ${SUPPORTED}` });
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return notADump('a PNG image');
  if (startsWith(head, [0xff, 0xd8, 0xff])) return notADump('a JPEG image');
  if (startsWith(head, ascii('GIF87a')) || startsWith(head, ascii('GIF89a'))) return notADump('a GIF image');
  if (startsWith(head, ascii('%PDF-'))) return notADump('a PDF document');
  if (startsWith(head, [0xff, 0xfe]) || startsWith(head, [0xfe, 0xff])) {
    return refuse({ noun: 'UTF-16 text', message: 'the dump is UTF-16 text; divio reads SQL dumps as UTF-8', hint: UTF16_HINT });
  }

  // Plain SQL: text without NUL bytes, valid UTF-8, mostly printable.
  const bom = startsWith(head, [...UTF8_BOM]);
  const data = bom ? head.subarray(3) : head;
  const window = data.subarray(0, SNIFF_BYTES);
  const moreFollows = !ended || data.length > window.length;
  const binary = (): SniffResult =>
    refuse({
      noun: `binary data (first bytes: ${hexBytes(head)})`,
      message: `the dump is binary data (first bytes: ${hexBytes(head)}), not a PostgreSQL dump`,
      hint: `check that you picked the right file; ${SUPPORTED}`,
    });
  if (window.indexOf(0) !== -1) {
    if (looksLikeUtf16(window) !== null) {
      return refuse({ noun: 'UTF-16 text', message: 'the dump is UTF-16 text; divio reads SQL dumps as UTF-8', hint: UTF16_HINT });
    }
    return binary();
  }
  let control = 0;
  for (const b of window) {
    if ((b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0b && b !== 0x0c && b !== 0x0d) || b === 0x7f) control++;
  }
  if (control * 20 > window.length) return binary();
  const bad = invalidUtf8Offset(window, moreFollows);
  // A dump that names its encoding before its first non-UTF-8 byte (pg_dump -E SJIS writes
  // `SET client_encoding = 'SJIS';` near the top) is read in that encoding by the import.
  if (bad !== -1 && !/\bclient_encoding\b|\bset\s+names\b/i.test(window.subarray(0, bad).toString('latin1'))) {
    const offset = bad + (bom ? 3 : 0);
    return refuse({
      noun: `text that is not valid UTF-8 (invalid byte 0x${head[offset]!.toString(16).padStart(2, '0')} at offset ${offset})`,
      hint: `convert it to UTF-8 first, e.g. \`iconv -f LATIN1 -t UTF-8 dump.sql > dump-utf8.sql\` (use the encoding it was written in); ${SUPPORTED}`,
    });
  }
  return { kind: 'plain', bom };
}

function refusalError(what: Refusal, insideGzip: boolean): InvalidInputError {
  const message = insideGzip ? `the dump is gzip containing ${what.noun}` : (what.message ?? `the dump is ${what.noun}`);
  return new InvalidInputError(message, { hint: what.hint });
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('dump stream yielded a non-binary chunk');
}

type ByteIterator = AsyncIterator<unknown>;

interface Head {
  head: Buffer;
  ended: boolean;
}

/** Reads chunks until at least `min` bytes are collected or the input ends. */
async function readHead(it: ByteIterator, min: number): Promise<Head> {
  const chunks: Buffer[] = [];
  let size = 0;
  while (size < min) {
    const next = await it.next();
    if (next.done === true) return { head: Buffer.concat(chunks, size), ended: true };
    const chunk = toBuffer(next.value);
    if (chunk.length === 0) continue;
    chunks.push(chunk);
    size += chunk.length;
  }
  return { head: Buffer.concat(chunks, size), ended: false };
}

/** A byte stream of `head` followed by the rest of `it`. Destroying it closes the source. */
function restStream(head: Buffer, it: ByteIterator, mapError?: (error: unknown) => unknown): Readable {
  let finished = false;
  const closeSource = async (): Promise<void> => {
    if (finished) return;
    finished = true;
    await it.return?.();
  };
  async function* generate(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      for (;;) {
        const next = await it.next();
        if (next.done === true) break;
        const chunk = toBuffer(next.value);
        if (chunk.length > 0) yield chunk;
      }
      finished = true;
    } catch (error) {
      throw mapError === undefined ? error : mapError(error);
    } finally {
      await closeSource();
    }
  }
  const stream = Readable.from(generate(), { objectMode: false });
  // Destroyed before it was ever read, the generator's finally never runs: close the source here.
  stream.once('close', () => {
    closeSource().catch(() => undefined);
  });
  return stream;
}

function isZlibError(error: unknown): error is Error & { code: string } {
  if (!(error instanceof Error)) return false;
  const code: unknown = (error as Error & { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('Z_');
}

const GZIP_HINT = 'check the file with `gzip -t FILE`; get a complete copy of the dump (re-download it or export it again)';

function gzipError(error: unknown): unknown {
  if (!isZlibError(error)) return error;
  if (error.code === 'Z_BUF_ERROR') {
    return new InvalidInputError(`the gzip data is truncated (${error.message}): the file was cut off`, { hint: GZIP_HINT, cause: error });
  }
  return new InvalidInputError(`the gzip data is corrupt (${error.message})`, { hint: GZIP_HINT, cause: error });
}

/**
 * Detects the format of a dump from its leading bytes and returns a stream of the whole dump.
 *
 * - PostgreSQL custom format (`PGDMP`) → `{ format: 'custom' }`.
 * - Plain SQL (UTF-8 text, or text in another encoding once it has set client_encoding; an optional
 *   BOM is stripped) → `{ format: 'plain' }`.
 * - gzip → decompressed (streaming, multi-member files too) and detected again; only custom or
 *   plain SQL inside is accepted. A truncated or corrupt gzip makes the returned stream error
 *   with an InvalidInputError (or this function reject, when it shows within the sniffed bytes).
 * - Anything else (empty, zip, bzip2, xz, zstd, tar, directory/tar-format pg_dump, images, PDF,
 *   binary, non-UTF-8 text) → rejects with an InvalidInputError naming what was found.
 *
 * On rejection the input is destroyed. Reading `input` is left to the returned stream, which
 * applies backpressure; destroying the returned stream destroys `input`.
 */
export async function openDump(input: Readable): Promise<OpenedDump> {
  const it = input[Symbol.asyncIterator]();
  let sniffed: Head;
  try {
    sniffed = await readHead(it, SNIFF_BYTES);
  } catch (error) {
    await it.return?.();
    throw error;
  }
  const outer = sniffDump(sniffed.head, sniffed.ended);
  switch (outer.kind) {
    case 'custom':
      return { format: 'custom', compression: 'none', stream: restStream(sniffed.head, it) };
    case 'plain': {
      const body = plainBody(sniffed.head, outer.bom);
      if (body.length === 0 && sniffed.ended) {
        await it.return?.();
        throw new InvalidInputError('the dump is empty (only a UTF-8 byte order mark)', {
          hint: `check that you picked the right file; ${SUPPORTED}`,
        });
      }
      return { format: 'plain', compression: 'none', stream: restStream(body, it) };
    }
    case 'empty':
      await it.return?.();
      throw new InvalidInputError('the dump is empty (0 bytes)', { hint: `check that you picked the right file; ${SUPPORTED}` });
    case 'refused':
      await it.return?.();
      throw refusalError(outer.what, false);
    case 'gzip':
      break;
  }

  const gunzip = createGunzip();
  pipeline(restStream(sniffed.head, it), gunzip, () => {
    /* errors surface through gunzip's reader below */
  });
  const inner = gunzip[Symbol.asyncIterator]();
  let unzipped: Head;
  try {
    unzipped = await readHead(inner, SNIFF_BYTES);
  } catch (error) {
    await inner.return?.();
    throw gzipError(error);
  }
  const kind = sniffDump(unzipped.head, unzipped.ended);
  switch (kind.kind) {
    case 'custom':
      return { format: 'custom', compression: 'gzip', stream: restStream(unzipped.head, inner, gzipError) };
    case 'plain': {
      const body = plainBody(unzipped.head, kind.bom);
      if (body.length === 0 && unzipped.ended) break;
      return { format: 'plain', compression: 'gzip', stream: restStream(body, inner, gzipError) };
    }
    case 'gzip':
      await inner.return?.();
      throw new InvalidInputError('the dump is gzip containing gzip-compressed data (it was compressed twice)', {
        hint: 'decompress it once (`gunzip FILE`) and import the result',
      });
    case 'refused':
      await inner.return?.();
      throw refusalError(kind.what, true);
    case 'empty':
      break;
  }
  await inner.return?.();
  throw new InvalidInputError('the dump is empty (gzip containing 0 bytes)', { hint: `check that you picked the right file; ${SUPPORTED}` });
}

function plainBody(head: Buffer, bom: boolean): Buffer {
  return bom ? head.subarray(UTF8_BOM.length) : head;
}
