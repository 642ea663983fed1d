/**
 * The data/media side of a sync: one lstat per entry, no file read. Digests come from the
 * manifest (a cache of path -> size, mtime, ctime, inode, digests) while a file's stat is
 * unchanged, so an unchanged tree is compared without reading a byte of it.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { lstat, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../core/fs-util.js';
import { fileKind, type FileDigests, type FileIdentity } from './digests.js';
import { keyProblem, temporaryName, temporaryNameOwner, type NameSemantics, type RefusedKey } from './keys.js';

export interface LocalFile extends FileIdentity {
  key: string;
  path: string;
  /** Known digests of the current content (from the manifest or hashed in this run). */
  digests?: FileDigests;
  /** It could not be read for comparison: it is transferred, never taken as equal. */
  unreadable?: boolean;
}

export interface LocalTree {
  root: string;
  files: Map<string, LocalFile>;
  /** Keys of directories, without a trailing slash. */
  directories: Set<string>;
  /** Entries never read, written or followed: symlinks and special files, by key, with what they are. */
  obstacles: Map<string, string>;
  /** Names that are not valid keys; never pushed. */
  invalid: RefusedKey[];
  /** Unfinished downloads of earlier runs that were removed. */
  abandonedRemoved: number;
}

/**
 * Walks the tree with blocking readdir/lstat, one directory at a time: thousands of tiny system
 * calls cost far less in the calling thread than as round trips through libuv's thread pool.
 * The event loop gets a turn between directories (the listing runs meanwhile; an abort is seen).
 */
export async function scanLocalTree(root: string, manifest: Manifest, signal?: AbortSignal): Promise<LocalTree> {
  const tree: LocalTree = { root, files: new Map(), directories: new Set(), obstacles: new Map(), invalid: [], abandonedRemoved: 0 };
  const pending: [string, string][] = [[root, '']];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [directory, prefix] = next;
    signal?.throwIfAborted();
    let names: Buffer[];
    try {
      names = readdirSync(directory, { encoding: 'buffer' });
    } catch (error) {
      if (prefix === '' && (error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    for (const raw of names) {
      const name = raw.toString();
      const key = prefix + name;
      if (!Buffer.from(name).equals(raw)) {
        tree.invalid.push({ key, reason: 'name is not valid UTF-8' });
        continue;
      }
      const path = join(directory, name);
      const owner = temporaryNameOwner(name);
      if (owner !== undefined) {
        if (removeIfAbandoned(path, owner)) tree.abandonedRemoved++;
        continue;
      }
      let info;
      try {
        info = lstatSync(path);
      } catch (error) {
        // Removed since the directory was read.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const problem = keyProblem(key);
      if (info.isDirectory()) {
        tree.directories.add(key);
        if (problem) tree.invalid.push({ key: `${key}/`, reason: problem });
        else pending.push([path, `${key}/`]);
      } else if (!info.isFile()) {
        tree.obstacles.set(key, fileKind(info));
      } else if (problem) {
        tree.invalid.push({ key, reason: problem });
      } else {
        const identity = { size: info.size, mtimeMs: info.mtimeMs, ctimeMs: info.ctimeMs, ino: info.ino };
        tree.files.set(key, { key, path, ...identity, digests: manifest.digestsOf(key, identity) });
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return tree;
}

/** A temporary download whose process is gone; one of a live process (a concurrent sync) stays. */
function removeIfAbandoned(path: string, owner: number): boolean {
  if (owner === process.pid || processAlive(owner)) return false;
  rmSync(path, { force: true });
  return true;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the directory's filesystem folds case or Unicode normalisation, found by creating one
 * file and looking it up under another spelling. Creates `root` if it is missing.
 */
export async function probeNameSemantics(root: string): Promise<NameSemantics> {
  await mkdir(root, { recursive: true });
  const name = `${temporaryName(randomBytes(8).toString('hex'))}.\u00e9`;
  const path = join(root, name);
  await writeFile(path, '', { flag: 'wx' });
  try {
    const exists = (other: string) =>
      lstat(join(root, other)).then(
        () => true,
        () => false,
      );
    return {
      caseInsensitive: await exists(name.replace('partial', 'PARTIAL')),
      normalising: await exists(name.replace('\u00e9', 'e\u0301')),
    };
  } finally {
    await rm(path, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------

interface ManifestEntry extends FileIdentity, FileDigests {}

interface ManifestFile {
  version: 1;
  root: string;
  files: Record<string, ManifestEntry>;
}

/** The digest cache of one local media directory. A missing, damaged or foreign manifest is empty. */
export class Manifest {
  private changed = false;

  private constructor(
    private readonly file: string,
    private readonly root: string,
    private entries: Map<string, ManifestEntry>,
  ) {}

  static async load(file: string, root: string): Promise<Manifest> {
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<ManifestFile>;
      if (parsed.version === 1 && parsed.root === root && typeof parsed.files === 'object' && parsed.files !== null) {
        return new Manifest(file, root, new Map(Object.entries(parsed.files)));
      }
    } catch {
      // Rebuilt from the files themselves: a cache, never the truth.
    }
    return new Manifest(file, root, new Map());
  }

  /** The cached digests, if the file's stat is exactly what it was when they were computed. */
  digestsOf(key: string, identity: FileIdentity): FileDigests | undefined {
    const entry = this.entries.get(key);
    if (!entry || entry.size !== identity.size || entry.mtimeMs !== identity.mtimeMs || entry.ctimeMs !== identity.ctimeMs || entry.ino !== identity.ino) {
      return undefined;
    }
    return { sha256: entry.sha256, ...(entry.md5 ? { md5: entry.md5 } : {}), ...(entry.etags ? { etags: entry.etags } : {}) };
  }

  remember(key: string, identity: FileIdentity, digests: FileDigests): void {
    const previous = this.entries.get(key);
    const entry: ManifestEntry = { ...identity, ...digests };
    if (previous && JSON.stringify(previous) === JSON.stringify(entry)) return;
    this.entries.set(key, entry);
    this.changed = true;
  }

  /** Drops every entry whose key is not in `present`. */
  retainOnly(present: ReadonlySet<string> | ReadonlyMap<string, unknown>): void {
    for (const key of this.entries.keys()) {
      if (!present.has(key)) {
        this.entries.delete(key);
        this.changed = true;
      }
    }
  }

  async save(): Promise<void> {
    if (!this.changed) return;
    const content: ManifestFile = { version: 1, root: this.root, files: Object.fromEntries(this.entries) };
    await writeFileAtomic(this.file, JSON.stringify(content));
    this.changed = false;
  }
}
