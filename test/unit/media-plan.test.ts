/**
 * What a media sync decides to do (src/services/project/media/plan.ts): pure, from the two trees.
 */
import { describe, expect, it } from 'vitest';
import { MIB } from '../../src/services/project/media/digests.js';
import { keyFold } from '../../src/services/project/media/keys.js';
import type { LocalFile, LocalTree } from '../../src/services/project/media/local-tree.js';
import { planSync, type PlanInput } from '../../src/services/project/media/plan.js';
import type { RemoteTree } from '../../src/services/project/media/remote-tree.js';

const PART = 16 * MIB;
const md5Of = (name: string) => name.padEnd(32, '0').slice(0, 32).replace(/[^0-9a-f]/g, 'a');

function local(files: Record<string, { size: number; md5?: string; etags?: Record<string, string> }>, extra: Partial<LocalTree> = {}): LocalTree {
  const entries = Object.entries(files).map(([key, file]): [string, LocalFile] => [
    key,
    {
      key,
      path: `/media/${key}`,
      size: file.size,
      mtimeMs: 1,
      ctimeMs: 1,
      ino: 1,
      ...(file.md5 || file.etags ? { digests: { sha256: `sha-${key}`, ...(file.md5 ? { md5: file.md5 } : {}), ...(file.etags ? { etags: file.etags } : {}) } } : {}),
    },
  ]);
  return { root: '/media', files: new Map(entries), directories: new Set(), obstacles: new Map(), invalid: [], abandonedRemoved: 0, ...extra };
}

function remote(objects: Record<string, { size: number; etag: string }>, refused: RemoteTree['refused'] = []): RemoteTree {
  return { objects: new Map(Object.entries(objects).map(([key, object]) => [key, { key, ...object }])), refused };
}

function plan(input: Omit<PlanInput, 'partSize'>) {
  return planSync({ partSize: PART, ...input });
}

describe('planSync: push', () => {
  it('sends new and changed files, skips equal ones, lists what only the bucket has', () => {
    const result = plan({
      direction: 'push',
      local: local({ 'new.txt': { size: 5 }, 'same.txt': { size: 4, md5: md5Of('same') }, 'grown.txt': { size: 9 }, 'edited.txt': { size: 4, md5: md5Of('edited2') } }),
      remote: remote({ 'same.txt': { size: 4, etag: `"${md5Of('same')}"` }, 'grown.txt': { size: 3, etag: '"x"' }, 'edited.txt': { size: 4, etag: `"${md5Of('edited')}"` }, 'old.txt': { size: 1, etag: '"y"' } }),
    });
    expect(result.transfers.map((transfer) => [transfer.key, transfer.reason])).toEqual([
      ['grown.txt', 'changed'],
      ['new.txt', 'new'],
      ['edited.txt', 'changed'],
    ]);
    expect(result.inSync).toEqual(['same.txt']);
    expect(result.targetOnly).toEqual(['old.txt']);
    expect(result.needDigests).toEqual([]);
  });

  it('asks for digests only when the sizes are equal and the manifest has none', () => {
    const result = plan({
      direction: 'push',
      local: local({ 'a.bin': { size: 10 }, 'big.bin': { size: 100 * MIB }, 'b.bin': { size: 11 } }),
      remote: remote({ 'a.bin': { size: 10, etag: `"${md5Of('a')}"` }, 'big.bin': { size: 100 * MIB, etag: `"${md5Of('big')}-7"` }, 'b.bin': { size: 12, etag: '"z"' } }),
    });
    expect(result.needDigests).toEqual([
      { key: 'a.bin', md5: true, partSizes: [] },
      { key: 'big.bin', md5: false, partSizes: [PART] },
    ]);
    expect(result.transfers.map((transfer) => transfer.key)).toEqual(['b.bin']);
  });

  it('recognises a multipart ETag made with another part size, and re-sends what it cannot compare', () => {
    const result = plan({
      direction: 'push',
      local: local({ 'rclone.bin': { size: 100 * MIB, etags: { [5 * MIB]: `${md5Of('r')}-20` } }, 'sse.bin': { size: 7, md5: md5Of('s') } }),
      remote: remote({ 'rclone.bin': { size: 100 * MIB, etag: `"${md5Of('r')}-20"` }, 'sse.bin': { size: 7, etag: '"opaque-kms-etag"' } }),
    });
    expect(result.inSync).toEqual(['rclone.bin']);
    expect(result.transfers.map((transfer) => transfer.key)).toEqual(['sse.bin']);
  });

  it('sends a file that could not be read for comparison (and the transfer reports why) rather than taking it as equal', () => {
    const tree = local({ 'locked.bin': { size: 4 } });
    (tree.files.get('locked.bin') as LocalFile).unreadable = true;
    const result = plan({ direction: 'push', local: tree, remote: remote({ 'locked.bin': { size: 4, etag: '"e"' } }) });
    expect(result.transfers.map((transfer) => transfer.key)).toEqual(['locked.bin']);
    expect(result.needDigests).toEqual([]);
  });

  it('refuses symlinks, special files and invalid names, and never deletes their keys from the bucket', () => {
    const result = plan({
      direction: 'push',
      local: local(
        { 'ok.txt': { size: 1 } },
        { obstacles: new Map([['link', 'a symbolic link'], ['fifo', 'a named pipe']]), invalid: [{ key: 'a\\b', reason: 'backslash in key' }] },
      ),
      remote: remote({ link: { size: 1, etag: '"a"' }, 'a\\b': { size: 1, etag: '"b"' }, gone: { size: 1, etag: '"c"' } }),
    });
    expect(result.refused).toEqual([
      { key: 'a\\b', reason: 'backslash in key' },
      { key: 'fifo', reason: 'a named pipe (not a regular file)' },
      { key: 'link', reason: 'symbolic link (never followed)' },
    ]);
    expect(result.targetOnly).toEqual(['gone']);
  });
});

describe('planSync: pull', () => {
  it('does not pull a key that is also a directory of other keys, and reports the collision', () => {
    const result = plan({
      direction: 'pull',
      local: local({}),
      remote: remote({ a: { size: 1, etag: '"1"' }, 'a/b': { size: 1, etag: '"2"' }, 'a/c/d': { size: 1, etag: '"3"' }, e: { size: 1, etag: '"4"' } }),
    });
    expect(result.collisions).toEqual([{ path: 'a', keys: ['a', 'a/b', 'a/c/d'], reason: 'a file and a directory of the same name' }]);
    expect(result.transfers.map((transfer) => transfer.key).sort()).toEqual(['a/b', 'a/c/d', 'e']);
  });

  it('on a case-insensitive, normalising filesystem: keys that are one file there are reported, not pulled', () => {
    const fold = keyFold({ caseInsensitive: true, normalising: true });
    const result = plan({
      direction: 'pull',
      fold,
      local: local({ 'Local.TXT': { size: 1, md5: md5Of('l') } }),
      remote: remote({
        'photo.jpg': { size: 1, etag: '"1"' },
        'Photo.JPG': { size: 1, etag: '"2"' },
        'caf\u00e9': { size: 1, etag: '"3"' },
        'cafe\u0301': { size: 1, etag: '"4"' },
        'local.txt': { size: 1, etag: '"5"' },
        'other.txt': { size: 1, etag: '"6"' },
      }),
    });
    expect(result.collisions.map((collision) => collision.keys)).toEqual([['Photo.JPG', 'photo.jpg'], ['cafe\u0301', 'caf\u00e9'], ['Local.TXT', 'local.txt']]);
    expect(result.transfers.map((transfer) => transfer.key)).toEqual(['other.txt']);
    // The local file that is "local.txt" on this filesystem is not deleted as local-only.
    expect(result.targetOnly).toEqual([]);
  });

  it('on Linux the same names are distinct files', () => {
    const result = plan({ direction: 'pull', local: local({}), remote: remote({ 'photo.jpg': { size: 1, etag: '"1"' }, 'Photo.JPG': { size: 1, etag: '"2"' } }) });
    expect(result.collisions).toEqual([]);
    expect(result.transfers).toHaveLength(2);
  });

  it('refuses keys that would be written through a symlink, over one, or where a file or directory is in the way', () => {
    const result = plan({
      direction: 'pull',
      local: local(
        { 'file.txt': { size: 3 } },
        { obstacles: new Map([['link', 'a symbolic link'], ['linked.txt', 'a symbolic link'], ['pipe', 'a named pipe']]), directories: new Set(['dir']) },
      ),
      remote: remote({
        'link/inside.txt': { size: 1, etag: '"1"' },
        'linked.txt': { size: 1, etag: '"2"' },
        'pipe': { size: 1, etag: '"3"' },
        'file.txt/under.txt': { size: 1, etag: '"4"' },
        dir: { size: 1, etag: '"5"' },
        'fine.txt': { size: 1, etag: '"6"' },
      }),
    });
    expect(Object.fromEntries(result.refused.map((refused) => [refused.key, refused.reason]))).toEqual({
      dir: 'a local directory has this name',
      'file.txt/under.txt': 'a local file is in the way (file.txt)',
      'link/inside.txt': 'the local path goes through a symbolic link (link)',
      'linked.txt': 'the local path is a symbolic link (never written through)',
      pipe: 'the local path is a named pipe',
    });
    expect(result.transfers.map((transfer) => transfer.key)).toEqual(['fine.txt']);
    // A local file is only "local-only" if the bucket has no such key at all.
    expect(result.targetOnly).toEqual(['file.txt']);
  });

  it('keeps local files whose keys the bucket has but were refused', () => {
    const result = plan({
      direction: 'pull',
      local: local({ 'weird.txt': { size: 1 }, 'mine.txt': { size: 1 } }),
      remote: remote({}, [{ key: 'weird.txt', reason: 'whatever' }]),
    });
    expect(result.targetOnly).toEqual(['mine.txt']);
  });
});
