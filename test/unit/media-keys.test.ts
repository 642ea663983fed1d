/**
 * Which object keys and local paths the media sync accepts (src/services/project/media/keys.ts),
 * and the ETag arithmetic it compares them with (digests.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { resolve, sep } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ContentHasher, compositeEtag, etagMatches, etagRequirement, MIB, partSizeFor } from '../../src/services/project/media/digests.js';
import {
  compareKeys,
  isDirectoryMarker,
  keyFold,
  keyProblem,
  temporaryName,
  temporaryNameOwner,
} from '../../src/services/project/media/keys.js';

describe('keyProblem', () => {
  it.each([
    'photo.jpg',
    'images/2024/01/photo.jpg',
    'a b+(1)&x=y.pdf',
    'caf\u00e9.txt',
    'cafe\u0301.txt',
    '日本語/ファイル.png',
    'emoji-😀.gif',
    '.hidden',
    '..dots-in-name..',
    'a'.repeat(255),
    `${'a'.repeat(200)}/${'b'.repeat(200)}/${'c'.repeat(200)}/${'d'.repeat(200)}/${'e'.repeat(220)}`,
  ])('accepts %j', (key) => {
    expect(keyProblem(key)).toBeUndefined();
  });

  it.each([
    ['', /empty key/],
    ['/abs', /absolute/],
    ['a\\b', /backslash/],
    ['ctl\u0001x', /control character/],
    ['nul\u0000x', /control character/],
    ['tab\tx', /control character/],
    ['new\nline', /control character/],
    ['del\u007fx', /control character/],
    ['../x', /"\.\." path segment/],
    ['a/../x', /"\.\." path segment/],
    ['./x', /"\." path segment/],
    ['a/./x', /"\." path segment/],
    ['a//b', /empty path segment/],
    ['dir/', /empty path segment/],
    ['a'.repeat(256), /segment longer than 255 bytes/],
    ['é'.repeat(128), /segment longer than 255 bytes/],
    [Array.from({ length: 6 }, () => 'x'.repeat(200)).join('/'), /longer than 1024 bytes/],
    ['lone\ud800surrogate', /not valid Unicode/],
    [`sub/${temporaryName('0123456789abcdef')}`, /reserved/],
  ])('refuses %j', (key, reason) => {
    expect(keyProblem(key)).toMatch(reason);
  });

  it('counts bytes, not characters: 1024 bytes pass, 1025 do not', () => {
    const key = (lengths: number[]) => lengths.map((length) => 'x'.repeat(length)).join('/');
    expect(Buffer.byteLength(key([255, 255, 255, 254, 1]))).toBe(1024);
    expect(keyProblem(key([255, 255, 255, 254, 1]))).toBeUndefined();
    expect(keyProblem(key([255, 255, 255, 255, 1]))).toMatch(/1024 bytes/);
    // 'é' is two bytes: 515 characters, 1026 bytes.
    const accented = Array.from({ length: 5 }, (_, i) => 'é'.repeat(i < 4 ? 127 : 3)).join('/');
    expect([accented.length, Buffer.byteLength(accented)]).toEqual([515, 1026]);
    expect(keyProblem(accented)).toMatch(/1024 bytes/);
  });

  it('never accepts a key that leaves the root or is not itself once joined to a path', () => {
    const root = resolve('/data/media');
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom('.', '..', '', '\\', '/', 'é', 'e\u0301')), { maxLength: 6 }), (parts) => {
        const key = parts.join('/');
        if (keyProblem(key) !== undefined) return true;
        const joined = resolve(root, ...key.split('/'));
        return joined.startsWith(root + sep) && joined.slice(root.length + 1) === key && !/[\u0000-\u001f\u007f\\]/.test(key);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('key helpers', () => {
  it('treats only empty keys ending in / as directory markers', () => {
    expect(isDirectoryMarker('dir/', 0)).toBe(true);
    expect(isDirectoryMarker('dir/', 3)).toBe(false);
    expect(isDirectoryMarker('dir', 0)).toBe(false);
  });

  it('sorts keys in UTF-8 byte order, as S3 lists them (not UTF-16 order)', () => {
    // U+FFFD is EF BF BD in UTF-8, 😀 is F0 9F 98 80; in UTF-16 😀 (D83D…) sorts first.
    expect(['😀', '\ufffd'].sort()).toEqual(['😀', '\ufffd']);
    expect(['😀', '\ufffd'].sort(compareKeys)).toEqual(['\ufffd', '😀']);
    expect(['a/x', 'a-b', 'a'].sort(compareKeys)).toEqual(['a', 'a-b', 'a/x']);
  });

  it('folds names as the local filesystem does', () => {
    expect(keyFold({ caseInsensitive: false, normalising: false })).toBeUndefined();
    const caseFold = keyFold({ caseInsensitive: true, normalising: false });
    expect(caseFold?.('Photo.JPG')).toBe(caseFold?.('photo.jpg'));
    expect(caseFold?.('caf\u00e9')).not.toBe(caseFold?.('cafe\u0301'));
    const both = keyFold({ caseInsensitive: true, normalising: true });
    expect(both?.('CAF\u00c9')).toBe(both?.('cafe\u0301'));
  });

  it('names temporary downloads after their process, so a later run can tell abandoned ones', () => {
    const name = temporaryName('0123456789abcdef');
    expect(name).toBe(`.divio-partial-${process.pid}-0123456789abcdef`);
    expect(temporaryNameOwner(name)).toBe(process.pid);
    expect(temporaryNameOwner(`${name}.\u00e9`)).toBe(process.pid);
    expect(temporaryNameOwner('.divio-partial-12-short')).toBeUndefined();
    expect(temporaryNameOwner('photo.jpg')).toBeUndefined();
  });
});

describe('ETags', () => {
  const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');

  it('compares a single-part ETag with the MD5, quotes and case aside', () => {
    const data = randomBytes(1000);
    const etag = `"${md5(data).toUpperCase()}"`;
    const requirement = etagRequirement(etag, data.length, 16 * MIB);
    expect(requirement).toEqual({ kind: 'md5' });
    expect(etagMatches({ sha256: 'x', md5: md5(data) }, etag, requirement)).toBe(true);
    expect(etagMatches({ sha256: 'x', md5: md5(randomBytes(10)) }, etag, requirement)).toBe(false);
    expect(etagMatches({ sha256: 'x' }, etag, requirement)).toBeUndefined();
  });

  it('finds the part size of a multipart ETag: ours, else whole MiB that give its part count', () => {
    const size = 100 * MIB + 1;
    expect(etagRequirement(`"${'a'.repeat(32)}-7"`, size, 16 * MIB)).toEqual({ kind: 'composite', partSize: 16 * MIB });
    // rclone's default 5 MiB chunks.
    expect(etagRequirement(`"${'a'.repeat(32)}-21"`, size, 16 * MIB)).toEqual({ kind: 'composite', partSize: 5 * MIB });
    expect(etagRequirement(`"${'a'.repeat(32)}-200"`, 5 * MIB, 16 * MIB)).toEqual({ kind: 'incomparable' });
    expect(etagRequirement('"not-an-md5"', 10, 16 * MIB)).toEqual({ kind: 'incomparable' });
    expect(etagMatches({ sha256: 'x' }, 'whatever', { kind: 'incomparable' })).toBe(false);
  });

  it('grows the part size to stay within 10,000 parts', () => {
    expect(partSizeFor(100 * MIB, 16 * MIB)).toBe(16 * MIB);
    expect(partSizeFor(200_000 * MIB, 16 * MIB)).toBe(20 * MIB);
  });

  it('hashes parts across any chunking exactly as S3 composes a multipart ETag', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 700 }), fc.array(fc.integer({ min: 1, max: 900 }), { minLength: 1, maxLength: 8 }), (size, partSize, chunkSizes) => {
        const data = randomBytes(size);
        const hasher = new ContentHasher({ md5: true, partSizes: [partSize] });
        for (let offset = 0, i = 0; offset < data.length; i++) {
          const length = chunkSizes[i % chunkSizes.length] as number;
          hasher.update(data.subarray(offset, offset + length));
          offset += length;
        }
        const parts: Buffer[] = [];
        for (let start = 0; start < Math.max(data.length, 1); start += partSize) parts.push(createHash('md5').update(data.subarray(start, start + partSize)).digest());
        const digests = hasher.digest();
        return digests.md5 === md5(data) && digests.etags?.[partSize] === compositeEtag(parts) && digests.sha256 === createHash('sha256').update(data).digest('hex');
      }),
      { numRuns: 300 },
    );
  });
});
