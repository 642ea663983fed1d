/**
 * Bare git repositories on local disk, one per app: ROOT/SLUG.git. What `git http-backend` serves.
 * Creating and removing go through a rename, so a repository is either there in full or not at all.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { DivioError, InvalidInputError, errorMessage } from '../../../core/errors.js';
import { SLUG_PATTERN } from '../../../shared/project-config.js';
import type { GitHosting } from '../parts.js';

/**
 * The environment every git process of the platform runs with: nothing inherited but PATH and HOME,
 * so a GIT_DIR, GIT_INDEX_FILE or similar in the server's own environment can never redirect it.
 */
export function gitProcessEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: process.env.HOME ?? '/' };
}

/** The slug becomes a path component: anything but SLUG_PATTERN is refused before it touches the disk. */
export function assertRepositorySlug(slug: string): void {
  if (!SLUG_PATTERN.test(slug)) throw new InvalidInputError(`"${slug}" is not a valid repository name`);
}

export function bareRepositoryPath(root: string, slug: string): string {
  assertRepositorySlug(slug);
  return join(resolve(root), `${slug}.git`);
}

/** Names for work in progress start with a dot, which SLUG_PATTERN never matches, so they cannot collide with a repository. */
function scratchPath(root: string, slug: string, purpose: 'creating' | 'removing'): string {
  return join(resolve(root), `.${slug}.git.${randomBytes(6).toString('hex')}.${purpose}`);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

async function git(args: string[]): Promise<void> {
  await execa('git', args, { env: gitProcessEnv(), extendEnv: false, stdin: 'ignore' });
}

export class BareRepositories implements GitHosting {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  repositoryPath(slug: string): string {
    return bareRepositoryPath(this.root, slug);
  }

  async exists(slug: string): Promise<boolean> {
    const path = this.repositoryPath(slug);
    try {
      return (await stat(join(path, 'HEAD'))).isFile();
    } catch {
      return false;
    }
  }

  async create(slug: string): Promise<void> {
    const target = this.repositoryPath(slug);
    if (await isDirectory(target)) return;
    await mkdir(this.root, { recursive: true });
    const scratch = scratchPath(this.root, slug, 'creating');
    try {
      await git(['init', '--quiet', '--bare', '--initial-branch=main', scratch]);
      // Deleting a branch by push is an ordinary thing for an app's owner to do.
      await git(['--git-dir', scratch, 'config', 'receive.denyDeletes', 'false']);
      await this.moveIntoPlace(scratch, target);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }

  async remove(slug: string): Promise<void> {
    const target = this.repositoryPath(slug);
    const scratch = scratchPath(this.root, slug, 'removing');
    try {
      await rename(target, scratch);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      throw error;
    }
    await rm(scratch, { recursive: true, force: true });
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
      await access(this.root, constants.W_OK);
    } catch (error) {
      throw new DivioError(`The git repository directory ${this.root} is not writable: ${errorMessage(error)}`, {
        hint: 'Give the platform user write access to it, or point the platform at another directory.',
        cause: error,
      });
    }
    try {
      await execa('git', ['--version'], { env: gitProcessEnv(), extendEnv: false, stdin: 'ignore' });
    } catch (error) {
      throw new DivioError(`git does not run on this host: ${errorMessage(error)}`, {
        hint: 'Install git (2.28 or newer) where the platform API runs.',
        cause: error,
      });
    }
  }

  /** A concurrent create may have won the race; its repository is as good as ours. */
  private async moveIntoPlace(scratch: string, target: string): Promise<void> {
    try {
      await rename(scratch, target);
    } catch (error) {
      const code = errorCode(error);
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await isDirectory(target))) return;
      throw error;
    }
  }
}
