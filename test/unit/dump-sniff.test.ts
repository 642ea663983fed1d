import { PassThrough, Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';

import { describe, expect, it } from 'vitest';

import { InvalidInputError } from '../../src/core/errors.js';
import { invalidUtf8Offset, openDump, SNIFF_BYTES, sniffDump } from '../../src/services/project/db/dump-sniff.js';

// ---------------------------------------------------------------------------------------------
// helpers

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A readable that delivers `data` in the given chunk sizes (cycled), or in one chunk. */
function source(data: Buffer, sizes: number[] = [data.length || 1]): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0, k = 0; i < data.length; k++) {
    const n = Math.max(1, sizes[k % sizes.length]!);
    chunks.push(data.subarray(i, i + n));
    i += n;
  }
  let index = 0;
  return new Readable({
    read() {
      this.push(index < chunks.length ? chunks[index++] : null);
    },
  });
}

function randomSizes(seed: number, count = 64, max = 5000): number[] {
  const rnd = mulberry32(seed);
  return Array.from({ length: count }, () => 1 + Math.floor(rnd() * max));
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

async function rejection(promise: Promise<unknown>): Promise<InvalidInputError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidInputError);
    const invalid = error as InvalidInputError;
    expect(invalid.exitCode).toBe(4);
    expect(invalid.hint).toBeTruthy();
    return invalid;
  }
  throw new Error('expected a rejection');
}

async function refusal(data: Buffer): Promise<string> {
  const input = source(data);
  const error = await rejection(openDump(input));
  expect(input.destroyed).toBe(true);
  return error.message;
}

/** Deterministic, poorly compressible SQL text of roughly `size` bytes. */
function sqlText(size: number, seed = 1): Buffer {
  const rnd = mulberry32(seed);
  const lines = ['--\n-- PostgreSQL database dump\n--\n\nCOPY t (a, b) FROM stdin;\n'];
  let length = lines[0]!.length;
  for (let row = 0; length < size; row++) {
    const line = `${row}\t${Math.floor(rnd() * 1e12).toString(36)} ${Math.floor(rnd() * 1e12).toString(36)} é ✓\t\\N\n`;
    lines.push(line);
    length += Buffer.byteLength(line);
  }
  return Buffer.from(lines.join(''));
}

function customDump(size: number): Buffer {
  const rnd = mulberry32(9);
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = Math.floor(rnd() * 256);
  Buffer.from('PGDMP\x01\x10\x00\x04\x08\x01\x01', 'latin1').copy(body);
  return body;
}

function tarHeader(name: string, size: number, type = '0'): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 'latin1');
  header.write('0000644\0', 100, 'latin1');
  header.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  header.write(type, 156, 'latin1');
  header.write('ustar\x0000', 257, 'latin1');
  return header;
}

function tarFile(entries: { name: string; body: Buffer; type?: string }[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    parts.push(tarHeader(entry.name, entry.body.length, entry.type));
    parts.push(entry.body, Buffer.alloc((512 - (entry.body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------

describe('openDump: plain SQL', () => {
  it('detects a short plain SQL dump and returns it whole', async () => {
    const sql = Buffer.from('SELECT 1;\n');
    const dump = await openDump(source(sql));
    expect(dump.format).toBe('plain');
    expect(dump.compression).toBe('none');
    expect(await collect(dump.stream)).toEqual(sql);
  });

  it('handles input delivered one byte per chunk', async () => {
    const sql = sqlText(SNIFF_BYTES * 2 + 17);
    const dump = await openDump(source(sql, [1]));
    expect(dump.format).toBe('plain');
    expect((await collect(dump.stream)).equals(sql)).toBe(true);
  });

  it('loses no bytes for random chunk sizes around the sniff window', async () => {
    const sql = sqlText(200_000, 3);
    for (let seed = 1; seed <= 10; seed++) {
      const dump = await openDump(source(sql, randomSizes(seed, 64, seed * 2000)));
      expect((await collect(dump.stream)).equals(sql)).toBe(true);
    }
  });

  it('accepts a multi-byte character cut by the end of the sniff window', async () => {
    for (let shift = 0; shift < 4; shift++) {
      const text = Buffer.concat([Buffer.from('-- '), Buffer.alloc(SNIFF_BYTES - 4 - shift, 'x'), Buffer.from('€€€ SELECT 1;\n')]);
      const dump = await openDump(source(text, [777]));
      expect(dump.format).toBe('plain');
      expect((await collect(dump.stream)).equals(text)).toBe(true);
    }
  });

  it('strips a UTF-8 byte order mark', async () => {
    const dump = await openDump(source(Buffer.from('\uFEFFSELECT 1;\n'), [1]));
    expect(dump.format).toBe('plain');
    expect((await collect(dump.stream)).toString()).toBe('SELECT 1;\n');
  });

  it('accepts an input shorter than the sniff window and text with tabs and CRLF', async () => {
    for (const text of ['x', 'SELECT 1', 'SELECT\t1;\r\n', 'PGD']) {
      const dump = await openDump(source(Buffer.from(text)));
      expect(dump.format).toBe('plain');
      expect((await collect(dump.stream)).toString()).toBe(text);
    }
  });

  it('refuses text that is not UTF-8 and names the offset', async () => {
    const latin1 = Buffer.from('-- café\nSELECT 1;\n', 'latin1');
    expect(await refusal(latin1)).toBe('the dump is text that is not valid UTF-8 (invalid byte 0xe9 at offset 6)');
  });

  it('accepts text in another encoding once it has set client_encoding (pg_dump -E SJIS), and only then', async () => {
    const sjis = Buffer.concat([Buffer.from("--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'SJIS';\nCREATE TABLE ", 'latin1'), Buffer.from([0x95, 0x5c]), Buffer.from(' (x int);\n')]);
    const dump = await openDump(source(sjis));
    expect(dump.format).toBe('plain');
    expect((await collect(dump.stream)).equals(sjis)).toBe(true);
    expect((await openDump(source(Buffer.from("SET NAMES 'LATIN1';\nSELECT 'caf\xe9';\n", 'latin1')))).format).toBe('plain');
    expect(await refusal(Buffer.from("SELECT 'caf\xe9';\nSET client_encoding = 'LATIN1';\n", 'latin1'))).toMatch(/not valid UTF-8 \(invalid byte 0xe9 at offset 11\)/);
  });

  it('refuses UTF-16 text (with or without a byte order mark)', async () => {
    expect(await refusal(Buffer.from('\uFEFFSELECT 1;', 'utf16le'))).toMatch(/^the dump is UTF-16 text/);
    expect(await refusal(Buffer.from('SELECT 1;\n-- more text here\n', 'utf16le'))).toMatch(/^the dump is UTF-16 text/);
  });
});

describe('openDump: custom format', () => {
  it('detects PGDMP and returns all bytes, even one byte per chunk', async () => {
    const dump = customDump(50_000);
    for (const sizes of [[dump.length], [1], randomSizes(4)]) {
      const opened = await openDump(source(dump, sizes));
      expect(opened.format).toBe('custom');
      expect(opened.compression).toBe('none');
      expect((await collect(opened.stream)).equals(dump)).toBe(true);
    }
  });

  it('accepts a custom dump shorter than the sniff window', async () => {
    const opened = await openDump(source(Buffer.from('PGDMP')));
    expect(opened.format).toBe('custom');
    expect((await collect(opened.stream)).toString()).toBe('PGDMP');
  });
});

describe('openDump: gzip', () => {
  it('decompresses gzip holding plain SQL', async () => {
    const sql = sqlText(300_000);
    const opened = await openDump(source(gzipSync(sql), [1, 7, 4096]));
    expect(opened).toMatchObject({ format: 'plain', compression: 'gzip' });
    expect((await collect(opened.stream)).equals(sql)).toBe(true);
  });

  it('decompresses gzip holding a custom dump', async () => {
    const dump = customDump(100_000);
    const opened = await openDump(source(gzipSync(dump), [1]));
    expect(opened).toMatchObject({ format: 'custom', compression: 'gzip' });
    expect((await collect(opened.stream)).equals(dump)).toBe(true);
  });

  it('strips a BOM inside gzip and handles tiny content', async () => {
    const opened = await openDump(source(gzipSync(Buffer.from('\uFEFFSELECT 1;'))));
    expect(opened.format).toBe('plain');
    expect((await collect(opened.stream)).toString()).toBe('SELECT 1;');
  });

  it('reads multi-member (concatenated) gzip files', async () => {
    const a = sqlText(20_000, 5);
    const b = Buffer.from('SELECT 2;\n');
    const c = sqlText(30_000, 6);
    const opened = await openDump(source(Buffer.concat([gzipSync(a), gzipSync(b), gzipSync(c)]), randomSizes(2, 64, 3000)));
    expect((await collect(opened.stream)).equals(Buffer.concat([a, b, c]))).toBe(true);
  });

  it('makes the stream fail when the gzip data is cut in half', async () => {
    const compressed = gzipSync(sqlText(500_000));
    const opened = await openDump(source(compressed.subarray(0, Math.floor(compressed.length / 2)), [65_536]));
    expect(opened.format).toBe('plain');
    const error = await rejection(collect(opened.stream));
    expect(error.message).toMatch(/^the gzip data is truncated \(unexpected end of file\): the file was cut off$/);
    expect(error.hint).toMatch(/gzip -t/);
  });

  it('makes the stream fail when bytes in the gzip data are flipped', async () => {
    const compressed = gzipSync(sqlText(500_000));
    for (const at of [0.3, 0.5, 0.9]) {
      const corrupt = Buffer.from(compressed);
      const middle = Math.floor(corrupt.length * at);
      for (let i = middle; i < middle + 16; i++) corrupt[i] = corrupt[i]! ^ 0xa5;
      const opened = await openDump(source(corrupt, [65_536]));
      const error = await rejection(collect(opened.stream));
      expect(error.message).toMatch(/^the gzip data is corrupt \(/);
    }
  });

  it('fails when the gzip trailer (CRC) does not match', async () => {
    const compressed = Buffer.from(gzipSync(sqlText(100_000)));
    compressed[compressed.length - 6] = compressed[compressed.length - 6]! ^ 0xff;
    const opened = await openDump(source(compressed));
    expect((await rejection(collect(opened.stream))).message).toMatch(/^the gzip data is corrupt \(incorrect data check\)/);
  });

  it('rejects right away when the gzip breaks within the sniffed bytes', async () => {
    const compressed = gzipSync(Buffer.from('SELECT 1;\n'));
    const input = source(compressed.subarray(0, 12));
    expect((await rejection(openDump(input))).message).toMatch(/^the gzip data is truncated/);
    expect(input.destroyed).toBe(true);
  });

  it('refuses gzip holding something else, naming it', async () => {
    expect(await refusal(gzipSync(tarFile([{ name: 'dump.sql', body: Buffer.from('SELECT 1;') }])))).toBe(
      'the dump is gzip containing a tar archive',
    );
    expect(await refusal(gzipSync(tarFile([{ name: 'toc.dat', body: Buffer.from('PGDMP') }])))).toBe(
      'the dump is gzip containing a PostgreSQL tar-format dump (pg_dump -Ft)',
    );
    expect(await refusal(gzipSync(Buffer.from('PK\x03\x04rest', 'latin1')))).toBe('the dump is gzip containing a zip archive');
    expect(await refusal(gzipSync(Buffer.from('BZh91AY&SY', 'latin1')))).toBe('the dump is gzip containing bzip2-compressed data');
    expect(await refusal(gzipSync(Buffer.from([0x00, 0x01, 0x02, 0x03])))).toBe('the dump is gzip containing binary data (first bytes: 00 01 02 03)');
    expect(await refusal(gzipSync(gzipSync(Buffer.from('SELECT 1;'))))).toMatch(/^the dump is gzip containing gzip-compressed data/);
    expect(await refusal(gzipSync(Buffer.alloc(0)))).toBe('the dump is empty (gzip containing 0 bytes)');
  });
});

describe('openDump: refused inputs', () => {
  it('refuses an empty input', async () => {
    expect(await refusal(Buffer.alloc(0))).toBe('the dump is empty (0 bytes)');
    expect(await refusal(Buffer.from('\uFEFF'))).toBe('the dump is empty (only a UTF-8 byte order mark)');
  });

  it('refuses other compressors and archives, saying what to do', async () => {
    expect(await refusal(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x04, 0x01]))).toBe(
      'the dump is compressed with zstd: decompress it first (`zstd -d`)',
    );
    expect(await refusal(Buffer.from('BZh91AY&SY\x00\x01', 'latin1'))).toBe('the dump is compressed with bzip2: decompress it first (`bzip2 -d`)');
    expect(await refusal(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00, 0x04]))).toBe(
      'the dump is compressed with xz: decompress it first (`xz -d`)',
    );
    expect(await refusal(Buffer.from([0x04, 0x22, 0x4d, 0x18, 0x64]))).toMatch(/^the dump is compressed with lz4/);
    expect(await refusal(Buffer.from('PK\x03\x04\x14\x00\x00\x00', 'latin1'))).toBe('the dump is a zip archive: extract it first (`unzip`)');
    expect(await refusal(Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0x00, 0x04]))).toMatch(/^the dump is a 7-Zip archive/);
    const zstd = await rejection(openDump(source(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00]))));
    expect(zstd.hint).toMatch(/zstd -dc/);
  });

  it('refuses tar archives, recognising PostgreSQL tar- and directory-format dumps', async () => {
    expect(await refusal(tarFile([{ name: 'backup/dump.sql', body: Buffer.from('SELECT 1;\n') }]))).toBe('the dump is a tar archive');
    expect(await refusal(tarFile([{ name: 'toc.dat', body: Buffer.from('PGDMP....') }, { name: '3456.dat', body: Buffer.from('1\n') }]))).toBe(
      'the dump is a PostgreSQL tar-format dump (pg_dump -Ft)',
    );
    const directory = tarFile([
      { name: 'mydump/', body: Buffer.alloc(0), type: '5' },
      { name: 'mydump/3456.dat.gz', body: Buffer.alloc(700, 1) },
      { name: 'mydump/toc.dat', body: Buffer.from('PGDMP....') },
    ]);
    expect(await refusal(directory)).toBe('the dump is a tar archive of a PostgreSQL directory-format dump (pg_dump -Fd)');
    const error = await rejection(openDump(source(directory, [1])));
    expect(error.hint).toMatch(/pg_restore -f dump\.sql/);
  });

  it('refuses images, PDFs and other binary data, showing the first bytes', async () => {
    expect(await refusal(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]))).toBe(
      'the dump is a PNG image, not a database dump',
    );
    expect(await refusal(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]))).toBe('the dump is a JPEG image, not a database dump');
    expect(await refusal(Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1'))).toBe('the dump is a PDF document, not a database dump');
    expect(await refusal(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0]))).toBe(
      'the dump is binary data (first bytes: 7f 45 4c 46 02 01 01 00 ...), not a PostgreSQL dump',
    );
    expect(await refusal(Buffer.from([0x1f]))).toBe('the dump is binary data (first bytes: 1f), not a PostgreSQL dump');
    // no NUL, valid UTF-8, but mostly control characters
    expect(await refusal(Buffer.from('\x01\x02\x03\x04\x05SELECT', 'latin1'))).toMatch(/^the dump is binary data \(first bytes: 01 02 03/);
  });

  it('passes source stream errors through unchanged', async () => {
    const failing = new PassThrough();
    const opened = openDump(failing);
    failing.write('SELECT 1;');
    failing.destroy(new Error('disk on fire'));
    await expect(opened).rejects.toThrow('disk on fire');

    const later = new PassThrough();
    later.write(Buffer.from(sqlText(SNIFF_BYTES + 10)));
    const dump = await openDump(later);
    later.destroy(new Error('read error later'));
    await expect(collect(dump.stream)).rejects.toThrow('read error later');
  });

  it('closes the input when the returned stream is destroyed', async () => {
    const input = source(sqlText(100_000), [1000]);
    const dump = await openDump(input);
    dump.stream.destroy();
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(input.destroyed).toBe(true);
  });
});

describe('sniffDump and invalidUtf8Offset', () => {
  it('classifies leading bytes', () => {
    expect(sniffDump(Buffer.alloc(0), true).kind).toBe('empty');
    expect(sniffDump(Buffer.from('PGDMP'), true).kind).toBe('custom');
    expect(sniffDump(Buffer.from([0x1f, 0x8b]), false).kind).toBe('gzip');
    expect(sniffDump(Buffer.from('\uFEFF--'), true)).toEqual({ kind: 'plain', bom: true });
  });

  it('validates UTF-8, allowing a character cut at the end only when more data follows', () => {
    const euro = Buffer.from('a€');
    expect(invalidUtf8Offset(euro, false)).toBe(-1);
    expect(invalidUtf8Offset(euro.subarray(0, 3), true)).toBe(-1);
    expect(invalidUtf8Offset(euro.subarray(0, 3), false)).toBe(1);
    expect(invalidUtf8Offset(Buffer.from([0x61, 0xc0, 0x80]), true)).toBe(1); // overlong
    expect(invalidUtf8Offset(Buffer.from([0xed, 0xa0, 0x80]), true)).toBe(0); // surrogate
    expect(invalidUtf8Offset(Buffer.from([0xf4, 0x90, 0x80, 0x80]), true)).toBe(0); // > U+10FFFF
    expect(invalidUtf8Offset(Buffer.from('😀✓é'), false)).toBe(-1);
  });
});
