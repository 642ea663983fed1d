/**
 * The media sync engine (`divio project pull/push media`) against the real embedded media store:
 * s3rver behind the platform's SigV4 gate, in-process on 127.0.0.1. (The gate answers listings
 * itself, so listings past 1,000 keys no longer need `--openssl-legacy-provider`.)
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type _Object,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createIO, type IO } from '../../src/core/io.js';
import { S3MediaStorage } from '../../src/platform/api/media-storage.js';
import { startMediaServer, type AccessKeyPair } from '../../src/platform/media/s3-server.js';
import * as digests from '../../src/services/project/media/digests.js';
import { MediaSyncError, planMediaSync, syncMedia, type MediaRemote, type MediaSyncOptions, type MediaSyncResult } from '../../src/services/project/media/sync.js';

// Counts every local file the engine opens for reading, to show that an unchanged tree is not read.
vi.mock('../../src/services/project/media/digests.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/services/project/media/digests.js')>();
  return { ...original, openRegularFile: vi.fn(original.openRegularFile), hashFile: vi.fn(original.hashFile) };
});

// The SDK's notice that Node 20 support ends in 2027 is noise here (the engine silences it too).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const REGION = 'us-east-1';
const ADMIN: AccessKeyPair = { accessKeyId: 'MEDIASYNCADMIN', secretAccessKey: randomBytes(24).toString('base64url') };
const MIB = 1024 * 1024;

let work: string;
let store: Store;
let storage: S3MediaStorage;
let admin: S3Client;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'divio-media-sync-'));
  store = await startStore(join(work, 'store'));
  storage = new S3MediaStorage({ endpoint: store.endpoint, publicUrl: store.endpoint, region: REGION, keysFile: store.keysFile, ...ADMIN });
  admin = s3Client(ADMIN);
});

afterAll(async () => {
  admin?.destroy();
  await store?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

beforeEach(() => {
  vi.mocked(digests.openRegularFile).mockClear();
  vi.mocked(digests.hashFile).mockClear();
});

// ---------------------------------------------------------------------------------------------
// The tests

describe('media sync round trip', () => {
  it('pushes a tree (nested, unicode NFC and NFD, empty, 50 MB single-part, 130 MiB multipart) and pulls it back identical', async () => {
    const bucket = await newBucket('roundtrip');
    const source = join(work, 'roundtrip-source');
    const files: Record<string, Buffer> = {
      'top.txt': Buffer.from('top'),
      'empty.txt': Buffer.alloc(0),
      'images/2024/01/photo.jpg': randomBytes(200 * 1024),
      'images/2024/01/empty/nothing.bin': Buffer.alloc(0),
      'docs/a b+(1)&x=y.pdf': randomBytes(3000),
      [`unicode/caf\u00e9.txt`]: Buffer.from('NFC'),
      [`unicode/cafe\u0301.txt`]: Buffer.from('NFD'),
      'unicode/日本語/ファイル.png': randomBytes(5000),
      'unicode/emoji-😀.gif': randomBytes(777),
      'medium.bin': randomBytes(5 * MIB + 3),
      'big/fifty.bin': randomBytes(50_000_000),
      // Above the 128 MiB multipart threshold.
      'big/multipart.bin': randomBytes(130 * MIB + 12345),
    };
    await writeTree(source, files);

    const pushed = await sync({ direction: 'push', localDir: source, remote: remoteFor(bucket) });
    expect(pushed.files).toEqual({ transferred: 12, skipped: 0, deleted: 0, failed: 0, refused: 0 });
    expect(pushed.bytes.transferred).toBe(Object.values(files).reduce((sum, body) => sum + body.length, 0));
    for (const file of pushed.transferred) expect(file.sha256).toBe(sha256(files[file.key] as Buffer));

    const listed = await listAll(admin, bucket.bucket);
    expect(listed.map((object) => object.Key).sort()).toEqual(Object.keys(files).sort());
    // NFC and NFD stay two keys, byte for byte.
    expect(listed.some((object) => object.Key === 'unicode/caf\u00e9.txt')).toBe(true);
    expect(listed.some((object) => object.Key === 'unicode/cafe\u0301.txt')).toBe(true);
    // The multipart object carries S3's composite ETag, the single-part ones their MD5.
    const etagOf = (key: string) => listed.find((object) => object.Key === key)?.ETag?.replace(/"/g, '');
    expect(etagOf('big/multipart.bin')).toBe(compositeEtag(files['big/multipart.bin'] as Buffer, 16 * MIB));
    expect(etagOf('big/fifty.bin')).toBe(md5(files['big/fifty.bin'] as Buffer));
    const head = await admin.send(new HeadObjectCommand({ Bucket: bucket.bucket, Key: 'big/multipart.bin' }));
    expect(head.Metadata?.sha256).toBe(sha256(files['big/multipart.bin'] as Buffer));
    expect(head.ContentType).toBe('application/octet-stream');
    expect((await admin.send(new HeadObjectCommand({ Bucket: bucket.bucket, Key: 'images/2024/01/photo.jpg' }))).ContentType).toBe('image/jpeg');

    const target = join(work, 'roundtrip-target');
    const pulled = await sync({ direction: 'pull', localDir: target, remote: remoteFor(bucket) }, 'pull-manifest.json');
    expect(pulled.files).toEqual({ transferred: 12, skipped: 0, deleted: 0, failed: 0, refused: 0 });
    expect(await readTree(target)).toEqual(hashes(files));
    expect(pulled.tree).toEqual(pushed.tree);
    expect(await temporaryFiles(target)).toEqual([]);
  });

  it('lists past 1,000 keys and re-syncs 1,100 unchanged files without reading one', async () => {
    const bucket = await newBucket('many');
    const source = join(work, 'many-source');
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 1100; i++) files[`d${i % 7}/f${i}.txt`] = Buffer.from(`file ${i}`);
    await writeTree(source, files);
    const first = await sync({ direction: 'push', localDir: source, remote: remoteFor(bucket) });
    expect(first.files.transferred).toBe(1100);

    vi.mocked(digests.openRegularFile).mockClear();
    vi.mocked(digests.hashFile).mockClear();
    const again = await sync({ direction: 'push', localDir: source, remote: remoteFor(bucket) });
    expect(again.files).toMatchObject({ transferred: 0, skipped: 1100 });
    expect(digests.openRegularFile).not.toHaveBeenCalled();
    expect(digests.hashFile).not.toHaveBeenCalled();

    const target = join(work, 'many-target');
    const pulled = await sync({ direction: 'pull', localDir: target, remote: remoteFor(bucket) }, 'many-pull.json');
    expect(pulled.files.transferred).toBe(1100);
    vi.mocked(digests.hashFile).mockClear();
    const pulledAgain = await sync({ direction: 'pull', localDir: target, remote: remoteFor(bucket) }, 'many-pull.json');
    expect(pulledAgain.files).toMatchObject({ transferred: 0, skipped: 1100 });
    expect(digests.hashFile).not.toHaveBeenCalled();
    expect(pulledAgain.tree).toEqual(again.tree);
  });

  it('detects a file changed to the same size (new mtime), and re-reads but does not re-send one only touched', async () => {
    const bucket = await newBucket('changed');
    const source = join(work, 'changed-source');
    await writeTree(source, { 'a.txt': Buffer.from('aaaa'), 'b.txt': Buffer.from('bbbb') });
    await sync({ direction: 'push', localDir: source, remote: remoteFor(bucket) });

    await writeFile(join(source, 'a.txt'), 'AAAA');
    const later = new Date(Date.now() + 5000);
    await utimes(join(source, 'a.txt'), later, later);
    await utimes(join(source, 'b.txt'), later, later);
    const result = await sync({ direction: 'push', localDir: source, remote: remoteFor(bucket) });
    expect(result.transferred.map((file) => file.key)).toEqual(['a.txt']);
    expect(result.files.skipped).toBe(1);
    expect(await readObjectText(bucket.bucket, 'a.txt')).toBe('AAAA');

    // A pull sees the other side's change the same way.
    const target = join(work, 'changed-target');
    await sync({ direction: 'pull', localDir: target, remote: remoteFor(bucket) }, 'changed-pull.json');
    await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: 'b.txt', Body: 'BBBB' }));
    const pulled = await sync({ direction: 'pull', localDir: target, remote: remoteFor(bucket) }, 'changed-pull.json');
    expect(pulled.transferred.map((file) => file.key)).toEqual(['b.txt']);
    expect(await readFile(join(target, 'b.txt'), 'utf8')).toBe('BBBB');
  });
});

describe('media sync refuses what it must not copy', () => {
  it('pull: bad keys are refused and listed, colliding keys reported, the good ones arrive, nothing lands outside', async () => {
    const bucket = await newBucket('badkeys');
    const long = ['x'.repeat(200), 'y'.repeat(200), 'z'.repeat(200), 'w'.repeat(200), 'v'.repeat(200), 'u'.repeat(90)].join('/');
    expect(Buffer.byteLength(long)).toBeGreaterThan(1024);
    // What the embedded store can hold is planted for real; what it (now) refuses is added to the
    // listing by a proxy, as another S3 server could hold it.
    const planted = { 'good/one.txt': 'one', 'a\\b': 'backslash', 'ctl\u0001char.txt': 'control', a: 'file a', 'a/b': 'file a/b', 'marker/': '' };
    for (const [key, body] of Object.entries(planted)) {
      await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: key, Body: body, ContentLength: Buffer.byteLength(body) }));
    }
    for (const key of ['../escaped', '/abs', 'a//b', 'x/./y']) {
      await expect(admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: key, Body: 'x' }))).rejects.toThrow();
    }
    await expect(admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: long, Body: 'x' }))).rejects.toMatchObject({ name: 'KeyTooLongError' });
    const injected = ['../escaped', '/abs', 'a//b', long, 'p/../../escaped2'];
    const proxy = await listingInjector(store.endpoint, injected);
    try {
      const target = join(work, 'badkeys-target', 'media');
      const io = captureIO();
      const result = await sync({ direction: 'pull', localDir: target, remote: { ...remoteFor(bucket), endpoint: proxy.endpoint }, io: io.io });
      expect(result.refused.map((refused) => refused.key).sort()).toEqual(['../escaped', '/abs', 'a//b', 'a\\b', 'ctl\u0001char.txt', long, 'p/../../escaped2'].sort());
      expect(result.refused.find((refused) => refused.key === long)?.reason).toMatch(/1024 bytes/);
      expect(result.collisions).toEqual([{ path: 'a', keys: ['a', 'a/b'], reason: expect.stringMatching(/file and a directory/) }]);
      expect(result.files).toMatchObject({ transferred: 2, failed: 0, refused: 7 });
      expect(await readTree(target)).toEqual(hashes({ 'good/one.txt': Buffer.from('one'), 'a/b': Buffer.from('file a/b') }));
      expect(await readdir(join(work, 'badkeys-target'))).toEqual(['media']);
      expect(io.stderr()).toMatch(/Warning: skipped "\.\.\/escaped"/);
      expect(io.stderr()).toMatch(/Warning: not copied: "a", "a\/b"/);
    } finally {
      await proxy.close();
    }
  });

  it('push: local names that cannot be keys are refused and listed; the others are pushed', async () => {
    const bucket = await newBucket('badnames');
    const source = join(work, 'badnames-source');
    const deep = ['d', 'e', 'f', 'g', 'h', 'i'].map((letter) => letter.repeat(200)).concat('j.txt').join('/');
    await writeTree(source, { 'ok.txt': Buffer.from('ok'), 'back\\slash.txt': Buffer.from('x'), 'tab\tname.txt': Buffer.from('x'), [deep]: Buffer.from('deep') });
    const result = await sync({ direction: 'push', localDir: source, remote: remoteFor(bucket) });
    // A directory whose own path is already too long is reported once, not file by file.
    const tooLong = `${dirname(deep)}/`;
    expect(result.refused.map((refused) => refused.key).sort()).toEqual(['back\\slash.txt', tooLong, 'tab\tname.txt'].sort());
    expect(result.refused.find((refused) => refused.key === tooLong)?.reason).toMatch(/1024 bytes/);
    expect((await listAll(admin, bucket.bucket)).map((object) => object.Key)).toEqual(['ok.txt']);
  });

  it('never follows a symlink in data/media: pull refuses keys through or onto one, push skips it', async () => {
    const bucket = await newBucket('symlinks');
    const outside = join(work, 'symlinks-outside');
    await writeTree(outside, { 'secret.txt': Buffer.from('outside, untouched') });
    const media = join(work, 'symlinks-media');
    await writeTree(media, { 'real.txt': Buffer.from('real') });
    await symlink(outside, join(media, 'linkdir'));
    await symlink(join(outside, 'secret.txt'), join(media, 'linkfile.txt'));

    const pushed = await sync({ direction: 'push', localDir: media, remote: remoteFor(bucket) });
    expect(pushed.refused).toEqual([
      { key: 'linkdir', reason: 'symbolic link (never followed)' },
      { key: 'linkfile.txt', reason: 'symbolic link (never followed)' },
    ]);
    expect((await listAll(admin, bucket.bucket)).map((object) => object.Key)).toEqual(['real.txt']);

    for (const key of ['linkdir/secret.txt', 'linkdir/new.txt', 'linkfile.txt']) {
      await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: key, Body: 'from the bucket' }));
    }
    const pulled = await sync({ direction: 'pull', localDir: media, remote: remoteFor(bucket), delete: true });
    expect(pulled.refused.map((refused) => refused.key)).toEqual(['linkdir/new.txt', 'linkdir/secret.txt', 'linkfile.txt']);
    expect(pulled.refused[0]?.reason).toMatch(/symbolic link/);
    expect(await readTree(outside)).toEqual(hashes({ 'secret.txt': Buffer.from('outside, untouched') }));
    expect((await lstat(join(media, 'linkdir'))).isSymbolicLink()).toBe(true);
    expect((await lstat(join(media, 'linkfile.txt'))).isSymbolicLink()).toBe(true);
  });
});

describe('media sync --delete', () => {
  it('removes only files that exist only on the target, in both directions', async () => {
    const bucket = await newBucket('delete');
    const media = join(work, 'delete-media');
    await writeTree(media, { 'keep.txt': Buffer.from('keep'), 'sub/keep2.txt': Buffer.from('keep2') });
    await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: 'remote-only.txt', Body: 'r' }));
    await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: 'old/remote-only2.txt', Body: 'r2' }));

    const kept = await sync({ direction: 'push', localDir: media, remote: remoteFor(bucket) });
    expect(kept.deletion).toEqual({ requested: false, candidates: 2, performed: false });
    const plan = await planMediaSync(options({ direction: 'push', localDir: media, remote: remoteFor(bucket), delete: true }));
    expect(plan.targetOnly).toEqual(['old/remote-only2.txt', 'remote-only.txt']);

    const pushed = await sync({ direction: 'push', localDir: media, remote: remoteFor(bucket), delete: true });
    expect(pushed.deleted).toEqual(['old/remote-only2.txt', 'remote-only.txt']);
    expect((await listAll(admin, bucket.bucket)).map((object) => object.Key).sort()).toEqual(['keep.txt', 'sub/keep2.txt']);

    await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: 'new-remote.txt', Body: 'n' }));
    await writeTree(media, { 'local-only/x.txt': Buffer.from('x') });
    const pulled = await sync({ direction: 'pull', localDir: media, remote: remoteFor(bucket), delete: true });
    expect(pulled.transferred.map((file) => file.key)).toEqual(['new-remote.txt']);
    expect(pulled.deleted).toEqual(['local-only/x.txt']);
    expect(await readTree(media)).toEqual(hashes({ 'keep.txt': Buffer.from('keep'), 'sub/keep2.txt': Buffer.from('keep2'), 'new-remote.txt': Buffer.from('n') }));
    // The directory emptied by the deletion went with it.
    await expect(stat(join(media, 'local-only'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses --delete from an empty tree, in both directions, before anything moves', async () => {
    const bucket = await newBucket('delempty');
    for (let i = 0; i < 3; i++) await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: `kept${i}.txt`, Body: `${i}` }));
    const empty = join(work, 'delempty-media');
    await mkdir(empty, { recursive: true });
    const error = await syncError({ direction: 'push', localDir: empty, remote: remoteFor(bucket), delete: true });
    expect(error.message).toMatch(/refusing --delete: .* is empty, so every one of the 3 file\(s\) on .* would be deleted/);
    expect(error.hint).toMatch(/Nothing was copied or deleted/);
    await expect(planMediaSync(options({ direction: 'push', localDir: empty, remote: remoteFor(bucket), delete: true }))).rejects.toThrow(/refusing --delete/);
    expect((await listAll(admin, bucket.bucket)).map((object) => object.Key).sort()).toEqual(['kept0.txt', 'kept1.txt', 'kept2.txt']);

    const emptyBucket = await newBucket('delempty2');
    const local = join(work, 'delempty-local');
    await writeTree(local, { 'mine.txt': Buffer.from('mine') });
    const pull = await syncError({ direction: 'pull', localDir: local, remote: remoteFor(emptyBucket), delete: true });
    expect(pull.message).toMatch(/refusing --delete: .* is empty/);
    expect(await readFile(join(local, 'mine.txt'), 'utf8')).toBe('mine');
  });

  it('refuses a sync that would delete more than --max-delete, naming the count; a higher limit lets it through', async () => {
    const bucket = await newBucket('delmax');
    for (let i = 0; i < 5; i++) await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: `old${i}.txt`, Body: `${i}` }));
    const media = join(work, 'delmax-media');
    await writeTree(media, { 'new.txt': Buffer.from('new') });
    const error = await syncError({ direction: 'push', localDir: media, remote: remoteFor(bucket), delete: true, maxDelete: 4 });
    expect(error.message).toMatch(/it would delete 5 file\(s\) on .*, more than --max-delete 4/);
    expect(error.hint).toMatch(/--max-delete 5/);
    expect((await listAll(admin, bucket.bucket)).map((object) => object.Key).sort()).toEqual(['old0.txt', 'old1.txt', 'old2.txt', 'old3.txt', 'old4.txt']);
    const pushed = await sync({ direction: 'push', localDir: media, remote: remoteFor(bucket), delete: true, maxDelete: 5 });
    expect(pushed.deleted).toHaveLength(5);
    expect((await listAll(admin, bucket.bucket)).map((object) => object.Key)).toEqual(['new.txt']);
  });

  it('deletes nothing when an upload fails (a key the store refuses), and says so', async () => {
    const bucket = await newBucket('delfail');
    await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: 'remote-only.txt', Body: 'stays' }));
    const media = join(work, 'delfail-media');
    // 240 bytes is a valid name everywhere, but the store's own file names would pass 255 bytes: it refuses the key.
    await writeTree(media, { 'fine.txt': Buffer.from('fine'), [`${'n'.repeat(240)}.txt`]: Buffer.from('refused by the store') });
    const error = await syncError({ direction: 'push', localDir: media, remote: remoteFor(bucket), delete: true });
    expect(error.message).toMatch(/1 file\(s\) failed to upload/);
    expect(error.hint).toMatch(/Nothing was deleted/);
    expect(error.result.failures).toEqual([expect.objectContaining({ key: `${'n'.repeat(240)}.txt`, operation: 'upload', code: 'InvalidArgument' })]);
    expect(error.result.deletion).toEqual({ requested: true, candidates: 1, performed: false, reason: '1 transfer(s) failed, so no file was deleted' });
    expect(error.result.files).toMatchObject({ transferred: 1, failed: 1, deleted: 0 });
    expect((await listAll(admin, bucket.bucket)).map((object) => object.Key).sort()).toEqual(['fine.txt', 'remote-only.txt']);
  });

  it('deletes nothing when the credentials provider starts failing part-way', async () => {
    const bucket = await newBucket('credfail');
    const target = join(work, 'credfail-media');
    await writeTree(target, { 'local-only.txt': Buffer.from('stays') });
    for (let i = 0; i < 6; i++) await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: `f${i}.txt`, Body: `${i}` }));
    let calls = 0;
    // Credentials that are already expiring are fetched again for every request: the fourth fetch fails.
    const credentials = async () => {
      if (++calls > 3) throw new Error('the platform refused to issue media credentials');
      return { accessKeyId: bucket.accessKeyId, secretAccessKey: bucket.secretAccessKey, expiration: new Date(Date.now() - 1000) };
    };
    const error = await syncError({ direction: 'pull', localDir: target, remote: { ...remoteFor(bucket), credentials }, delete: true, concurrency: 1 });
    expect(error.result.failures.length).toBeGreaterThan(0);
    expect(error.result.failures[0]?.message).toMatch(/refused to issue/);
    expect(error.result.deletion.performed).toBe(false);
    expect(await readFile(join(target, 'local-only.txt'), 'utf8')).toBe('stays');
  });
});

describe('media sync interrupted', () => {
  it('an abort in the middle of a multipart upload leaves no object and no parts', async () => {
    const bucket = await newBucket('abortup');
    const media = join(work, 'abortup-media');
    await writeTree(media, { 'huge.bin': randomBytes(150 * MIB) });
    const controller = new AbortController();
    const uploads = join(store.directory, bucket.bucket, '._S3rver_uploads');
    const watching = waitUntil(async () => (await filesUnder(uploads)).some((name) => /\/[0-9]+$/.test(name)), 'a part is stored').then(() => controller.abort(new Error('interrupted')));
    const error = await syncError({ direction: 'push', localDir: media, remote: remoteFor(bucket), signal: controller.signal, multipart: { partsInFlight: 1 } });
    await watching;
    expect(error.result.interrupted).toBe(true);
    expect(error.message).toMatch(/interrupted/);
    expect(await listAll(admin, bucket.bucket)).toEqual([]);
    await waitUntil(async () => (await filesUnder(uploads)).length === 0, 'the aborted upload is removed');
  });

  it('an abort in the middle of a download leaves the old file intact and no partial or temporary file', async () => {
    const bucket = await newBucket('abortdown');
    await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: 'video.bin', Body: randomBytes(120 * MIB) }));
    for (let i = 0; i < 5; i++) await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: `clip${i}.bin`, Body: randomBytes(30 * MIB) }));
    const media = join(work, 'abortdown-media');
    await writeTree(media, { 'video.bin': Buffer.from('the old video') });
    const controller = new AbortController();
    const watching = waitUntil(async () => {
      const partial = (await readdir(media)).filter((name) => name.startsWith('.divio-partial-'));
      const sizes = await Promise.all(partial.map((name) => stat(join(media, name)).then((info) => info.size, () => 0)));
      return sizes.some((size) => size > 10 * MIB);
    }, 'a download is under way').then(() => controller.abort(new Error('interrupted')));
    const error = await syncError({ direction: 'pull', localDir: media, remote: remoteFor(bucket), signal: controller.signal, concurrency: 2 });
    await watching;
    expect(error.result.interrupted).toBe(true);
    expect(await readFile(join(media, 'video.bin'), 'utf8')).toBe('the old video');
    expect(await temporaryFiles(media)).toEqual([]);
    // Whatever did arrive, arrived whole.
    for (const name of await readdir(media)) {
      if (name.startsWith('clip')) expect((await stat(join(media, name))).size).toBe(30 * MIB);
    }
  });

  it('a download that arrives different from the object is retried, and never lands if it stays wrong', async () => {
    const bucket = await newBucket('corrupt');
    // 8 MiB goes through a download worker, 100 KiB through the main thread: both are checked.
    const objects = { 'big.bin': randomBytes(8 * MIB), 'small.bin': randomBytes(100 * 1024), 'flaky.bin': randomBytes(6 * MIB), 'fine.bin': randomBytes(1000) };
    // big.bin is checked against its x-amz-meta-sha256 (as the engine uploads), the others against their ETag (MD5).
    for (const [key, body] of Object.entries(objects)) {
      await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: key, Body: body, ...(key === 'big.bin' ? { Metadata: { sha256: sha256(body) } } : {}) }));
    }
    const media = join(work, 'corrupt-media');
    await writeTree(media, { 'big.bin': Buffer.from('the old big file') });
    // Every answer for big.bin and small.bin is damaged; flaky.bin's first only.
    const proxy = await bodyCorrupter(store.endpoint, (key, attempt) => key === 'big.bin' || key === 'small.bin' || (key === 'flaky.bin' && attempt === 1));
    try {
      const error = await syncError({ direction: 'pull', localDir: media, remote: { ...remoteFor(bucket), endpoint: proxy.endpoint } });
      expect(error.result.failures.map((failure) => [failure.key, failure.code]).sort()).toEqual([
        ['big.bin', 'DigestMismatch'],
        ['small.bin', 'DigestMismatch'],
      ]);
      expect(error.result.failures.find((failure) => failure.key === 'big.bin')?.message).toMatch(/sha256 .* does not match/);
      expect(error.result.failures.find((failure) => failure.key === 'small.bin')?.message).toMatch(/MD5 .* does not match the ETag/);
      expect(proxy.attempts('big.bin')).toBe(4);
      expect(proxy.attempts('flaky.bin')).toBe(2);
      expect(await readTree(media)).toEqual(
        hashes({ 'big.bin': Buffer.from('the old big file'), 'flaky.bin': objects['flaky.bin'], 'fine.bin': objects['fine.bin'] }),
      );
      expect(await temporaryFiles(media)).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it('a temporary file left by a killed run is removed by the next run', async () => {
    const bucket = await newBucket('leftover');
    const media = join(work, 'leftover-media');
    const dead = spawnSyncDeadPid();
    await writeTree(media, { [`sub/.divio-partial-${dead}-0123456789abcdef`]: Buffer.from('half') });
    await sync({ direction: 'pull', localDir: media, remote: remoteFor(bucket) });
    expect(await temporaryFiles(media)).toEqual([]);
  });
});

describe('media sync credentials', () => {
  it('calls the provider again when the store says its key expired, and finishes with the new key', async () => {
    const bucket = await newBucket('expiry');
    await admin.send(new PutObjectCommand({ Bucket: bucket.bucket, Key: 'x.txt', Body: 'x' }));
    const expired = { accessKeyId: 'EXPIREDKEY', secretAccessKey: randomBytes(24).toString('base64url') };
    const fresh = { accessKeyId: 'FRESHKEY', secretAccessKey: randomBytes(24).toString('base64url') };
    await addKeys({
      [expired.accessKeyId]: { secretAccessKey: expired.secretAccessKey, bucket: bucket.bucket, expiresAt: new Date(Date.now() - 1000).toISOString() },
      [fresh.accessKeyId]: { secretAccessKey: fresh.secretAccessKey, bucket: bucket.bucket, expiresAt: new Date(Date.now() + 3600_000).toISOString() },
    });
    const handedOut: string[] = [];
    // The provider believes its first key is good for an hour; the store knows better.
    const credentials = async () => {
      const key = handedOut.length === 0 ? expired : fresh;
      handedOut.push(key.accessKeyId);
      return { ...key, expiration: new Date(Date.now() + 3600_000) };
    };
    const target = join(work, 'expiry-media');
    const result = await sync({ direction: 'pull', localDir: target, remote: { ...remoteFor(bucket), credentials } });
    expect(result.files.transferred).toBe(1);
    expect(handedOut).toEqual(['EXPIREDKEY', 'FRESHKEY']);
    expect(store.log.some((line) => /refused GET .*ExpiredToken/.test(line))).toBe(true);
  });

  it("confines a bucket's credentials to it: another bucket can be neither listed, read nor written", async () => {
    const mine = await newBucket('isolation-a');
    const theirs = await newBucket('isolation-b');
    await admin.send(new PutObjectCommand({ Bucket: theirs.bucket, Key: 'private.txt', Body: 'theirs' }));
    const intruder = { ...remoteFor(theirs), credentials: remoteFor(mine).credentials };
    const media = join(work, 'isolation-media');
    await writeTree(media, { 'planted.txt': Buffer.from('x') });

    const pull = await syncError({ direction: 'pull', localDir: media, remote: intruder });
    expect(pull.message).toMatch(/AccessDenied/);
    const push = await syncError({ direction: 'push', localDir: media, remote: intruder, delete: true });
    expect(push.message).toMatch(/AccessDenied/);
    expect(push.hint).toMatch(/credentials were refused/);
    expect(await readTree(media)).toEqual(hashes({ 'planted.txt': Buffer.from('x') }));
    expect((await listAll(admin, theirs.bucket)).map((object) => object.Key)).toEqual(['private.txt']);
  });
});

describe('media sync endpoint names', () => {
  it('reaches an endpoint named under .localhost, which the system resolver does not know', async () => {
    const bucket = await newBucket('localhost');
    const media = join(work, 'localhost-media');
    await writeTree(media, { 'a.txt': Buffer.from('a') });
    const port = new URL(store.endpoint).port;
    const result = await sync({ direction: 'push', localDir: media, remote: { ...remoteFor(bucket), endpoint: `http://s3.divio.localhost:${port}` } });
    expect(result.files.transferred).toBe(1);
    expect(result.target).toBe(`http://s3.divio.localhost:${port}/${bucket.bucket}/`);
  });
});

describe('media sync progress', () => {
  it('redraws one line on a terminal', async () => {
    const bucket = await newBucket('progress-tty');
    const media = join(work, 'progress-tty-media');
    await writeTree(media, { 'a.bin': randomBytes(1000), 'b.bin': randomBytes(2000) });
    let text = '';
    const terminal = Object.assign(
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          text += chunk.toString();
          callback();
        },
      }),
      { isTTY: true, columns: 100 },
    );
    const io = createIO({ stdin: new PassThrough(), stdout: new PassThrough(), stderr: terminal, env: { TERM: 'xterm' } });
    expect(io.fancy).toBe(true);
    await sync({ direction: 'push', localDir: media, remote: remoteFor(bucket), io });
    expect(text).toMatch(/\r\x1b\[2K\[[#-]+\] Pushing \d\/2 files/);
    // The bar is cleared before the summary line.
    expect(text).toMatch(/\r\x1b\[2KPushed 2 file\(s\)/);
  });

  it('prints plain lines (no redraws) when stderr is not a terminal', async () => {
    const bucket = await newBucket('progress');
    const media = join(work, 'progress-media');
    await writeTree(media, { 'a.txt': Buffer.from('a'), 'b.txt': Buffer.from('b') });
    const io = captureIO();
    await sync({ direction: 'push', localDir: media, remote: remoteFor(bucket), io: io.io });
    expect(io.stderr()).not.toMatch(/\r|\x1b/);
    expect(io.stderr()).toMatch(/^Pushing 2 file\(s\), 2 B$/m);
    expect(io.stderr()).toMatch(/^Pushed 2 file\(s\) \(2 B\) in [\d.]+s, 0 unchanged$/m);
  });
});

// ---------------------------------------------------------------------------------------------
// Helpers

interface Bucket {
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

async function newBucket(name: string): Promise<Bucket> {
  const grant = await storage.provision({ bucket: `sync-${name}` });
  return { bucket: grant.bucket, accessKeyId: grant.accessKeyId, secretAccessKey: grant.secretAccessKey };
}

function remoteFor(bucket: Bucket): MediaRemote {
  return {
    endpoint: store.endpoint,
    region: REGION,
    bucket: bucket.bucket,
    prefix: '',
    credentials: async () => ({ accessKeyId: bucket.accessKeyId, secretAccessKey: bucket.secretAccessKey }),
  };
}

type SyncInput = Omit<MediaSyncOptions, 'io' | 'manifestFile'> & { io?: IO };

function options(input: SyncInput, manifest?: string): MediaSyncOptions {
  return {
    io: quietIO(),
    manifestFile: join(work, 'manifests', manifest ?? `${input.localDir.replace(/[^a-z0-9]+/gi, '_')}.json`),
    ...input,
  };
}

async function sync(input: SyncInput, manifest?: string): Promise<MediaSyncResult> {
  return syncMedia(options(input, manifest));
}

async function syncError(input: SyncInput): Promise<MediaSyncError> {
  const error = await syncMedia(options(input)).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(MediaSyncError);
  return error as MediaSyncError;
}

function quietIO(): IO {
  return captureIO().io;
}

function captureIO(): { io: IO; stderr: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  const io = createIO({ stdin: new PassThrough(), stdout: sink, stderr: sink, env: { NO_COLOR: '1' } });
  return { io, stderr: () => text };
}

function s3Client(key: AccessKeyPair): S3Client {
  return new S3Client({
    endpoint: store.endpoint,
    region: REGION,
    credentials: key,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });
}

async function listAll(client: S3Client, bucket: string): Promise<_Object[]> {
  const objects: _Object[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    objects.push(...(page.Contents ?? []));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return objects;
}

async function readObjectText(bucket: string, key: string): Promise<string> {
  const response = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return response.Body!.transformToString();
}

async function writeTree(root: string, files: Record<string, Buffer>): Promise<void> {
  for (const [key, body] of Object.entries(files)) {
    await mkdir(dirname(join(root, key)), { recursive: true });
    await writeFile(join(root, key), body);
  }
}

/** key -> sha256 of every regular file under `root` (symlinks are not followed). */
async function readTree(root: string, prefix = ''): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) Object.assign(tree, await readTree(path, `${prefix}${entry.name}/`));
    else if (entry.isFile()) tree[`${prefix}${entry.name}`] = sha256(await readFile(path));
  }
  return tree;
}

function hashes(files: Record<string, Buffer>): Record<string, string> {
  return Object.fromEntries(Object.entries(files).map(([key, body]) => [key, sha256(body)]));
}

async function filesUnder(root: string): Promise<string[]> {
  try {
    return (await readdir(root, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
  } catch {
    return [];
  }
}

async function temporaryFiles(root: string): Promise<string[]> {
  return (await filesUnder(root)).filter((path) => path.includes('.divio-partial-'));
}

async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

function compositeEtag(data: Buffer, partSize: number): string {
  const parts: Buffer[] = [];
  for (let start = 0; start < data.length; start += partSize) parts.push(createHash('md5').update(data.subarray(start, start + partSize)).digest());
  return `${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-${parts.length}`;
}

/** The pid of a process that has exited (for an abandoned temporary file). */
function spawnSyncDeadPid(): number {
  return Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).toString());
}

async function addKeys(keys: Record<string, { secretAccessKey: string; bucket: string; expiresAt?: string }>): Promise<void> {
  const file = JSON.parse(await readFile(store.keysFile, 'utf8')) as { keys: Record<string, unknown> };
  Object.assign(file.keys, keys);
  const temporary = `${store.keysFile}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(file), { mode: 0o600 });
  await rename(temporary, store.keysFile);
  // The store reloads the file within a second; a key it knows answers anything but InvalidAccessKeyId.
  const probe = s3Client({ accessKeyId: Object.keys(keys)[0] as string, secretAccessKey: Object.values(keys)[0]?.secretAccessKey as string });
  try {
    await waitUntil(
      () =>
        probe.send(new ListObjectsV2Command({ Bucket: Object.values(keys)[0]?.bucket })).then(
          () => true,
          (error: { name?: string }) => error.name !== 'InvalidAccessKeyId',
        ),
      'the new keys are loaded',
    );
  } finally {
    probe.destroy();
  }
}

/**
 * A proxy that adds keys to every ListObjectsV2 answer: keys the embedded store cannot hold, but
 * another S3 server could. The Host header is passed on unchanged, so signatures still verify.
 */
async function listingInjector(upstream: string, keys: string[]): Promise<{ endpoint: string; close(): Promise<void> }> {
  const target = new URL(upstream);
  const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const entries = keys.map((key) => `<Contents><Key>${escape(key)}</Key><ETag>"${md5(Buffer.from(key))}"</ETag><Size>3</Size></Contents>`).join('');
  const server: Server = createServer((incoming, outgoing) => {
    const forward = httpRequest(
      { host: target.hostname, port: target.port, method: incoming.method, path: incoming.url, headers: incoming.headers },
      (response) => {
        const isListing = incoming.method === 'GET' && /[?&]list-type=2/.test(incoming.url ?? '') && response.statusCode === 200;
        if (!isListing) {
          outgoing.writeHead(response.statusCode ?? 502, response.headers);
          response.pipe(outgoing);
          return;
        }
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const body = Buffer.concat(chunks).toString().replace('</ListBucketResult>', `${entries}</ListBucketResult>`);
          const headers = { ...response.headers, 'content-length': String(Buffer.byteLength(body)) };
          outgoing.writeHead(200, headers);
          outgoing.end(body);
        });
      },
    );
    forward.on('error', () => outgoing.destroy());
    incoming.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * A proxy that flips one byte in the middle of GetObject bodies when `corrupt(key, attempt)` says
 * so (attempt counts the GETs of that key from 1); headers, and so signatures, pass unchanged.
 */
async function bodyCorrupter(
  upstream: string,
  corrupt: (key: string, attempt: number) => boolean,
): Promise<{ endpoint: string; attempts(key: string): number; close(): Promise<void> }> {
  const target = new URL(upstream);
  const gets = new Map<string, number>();
  const server: Server = createServer((incoming, outgoing) => {
    const path = new URL(incoming.url ?? '/', 'http://proxy').pathname;
    const key = decodeURIComponent(path.split('/').slice(2).join('/'));
    const isGet = incoming.method === 'GET' && key !== '' && !/[?&]list-type=/.test(incoming.url ?? '');
    const attempt = isGet ? (gets.get(key) ?? 0) + 1 : 0;
    if (isGet) gets.set(key, attempt);
    const forward = httpRequest({ host: target.hostname, port: target.port, method: incoming.method, path: incoming.url, headers: incoming.headers }, (response) => {
      outgoing.writeHead(response.statusCode ?? 502, response.headers);
      if (!isGet || response.statusCode !== 200 || !corrupt(key, attempt)) {
        response.pipe(outgoing);
        return;
      }
      const middle = Math.floor(Number(response.headers['content-length']) / 2);
      let offset = 0;
      response.on('data', (chunk: Buffer) => {
        if (middle >= offset && middle < offset + chunk.length) {
          chunk = Buffer.from(chunk);
          chunk[middle - offset] = (chunk[middle - offset] as number) ^ 0xff;
        }
        offset += chunk.length;
        outgoing.write(chunk);
      });
      response.on('end', () => outgoing.end());
    });
    forward.on('error', () => outgoing.destroy());
    incoming.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    attempts: (key) => gets.get(key) ?? 0,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// The store

interface Store {
  endpoint: string;
  directory: string;
  keysFile: string;
  log: string[];
  stop(): Promise<void>;
}

async function startStore(root: string): Promise<Store> {
  const directory = join(root, 'objects');
  const keysFile = join(root, 'secrets', 'media-keys.json');
  await mkdir(dirname(keysFile), { recursive: true });
  await writeFile(keysFile, JSON.stringify({ keys: {} }), { mode: 0o600 });
  const log: string[] = [];
  const server = await startMediaServer({ directory, address: '127.0.0.1', port: 0, adminKey: ADMIN, keysFile, log: (line) => log.push(line) });
  return { endpoint: `http://127.0.0.1:${server.port}`, directory, keysFile, log, stop: () => server.close() };
}
