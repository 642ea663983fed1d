/**
 * Bare git repositories on local disk, one per app: ROOT/SLUG.git. What `git http-backend` serves.
 * Creating and removing go through a rename, so a repository is either there in full or not at all.
 */
import { gitRepositoryName } from '../resource-names.js';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { DivioError, InvalidInputError, errorMessage } from '../../../core/errors.js';
import { SLUG_PATTERN } from '../../../shared/project-config.js';
import type { GitHosting } from '../parts.js';
import {
  HIDDEN_REF_NAMESPACE,
  PROTECTION_LIST_FILE,
  UPDATE_HOOK,
  UPDATE_HOOK_FILE,
  deploymentRef,
  renderProtectionList,
  type BranchProtection,
} from './protection.js';

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
  return join(resolve(root), gitRepositoryName(slug));
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

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

async function git(args: string[]): Promise<string> {
  const result = await execa('git', args, { env: gitProcessEnv(), extendEnv: false, stdin: 'ignore' });
  return `${result.stdout}`;
}

/** Written beside and renamed over, so git never runs a half-written hook nor reads half a list. */
async function writeIfChanged(path: string, content: string, mode: number): Promise<void> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === content && ((await stat(path)).mode & 0o777) === mode) return;
  const scratch = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(scratch, content, { mode });
    await chmod(scratch, mode);
    await rename(scratch, path);
  } finally {
    await rm(scratch, { force: true });
  }
}

/**
 * Point refs/divio/deployments/ID at COMMIT in the bare repository at REPOSITORY, so that whatever is
 * pushed or deleted later, and whatever gc prunes, the commit a deployment used stays.
 */
export async function recordDeploymentRef(repository: string, deploymentId: string, commit: string): Promise<void> {
  if (!/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(commit)) throw new InvalidInputError(`"${commit}" is not a commit id`);
  await git(['--git-dir', repository, 'update-ref', '-m', `divio: deployment ${deploymentId}`, deploymentRef(deploymentId), `${commit}^{commit}`]);
}

export class BareRepositories implements GitHosting {
  readonly root: string;
  /** The protection list last written per repository by this process: an unchanged one costs two stats. */
  private readonly secured = new Map<string, string>();

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

  /**
   * Make the repository keep its deployed history (see protection.ts): deployment refs hidden from
   * clients, the update hook in place, and PROTECTIONS as the branches it refuses to rewrite.
   * Idempotent and cheap when nothing changed, so it runs whenever the repository is served; a
   * repository made before this existed is brought up to date the first time.
   */
  async secure(slug: string, protections: readonly BranchProtection[]): Promise<void> {
    const path = this.repositoryPath(slug);
    const list = renderProtectionList(protections);
    const hook = join(path, 'hooks', UPDATE_HOOK_FILE);
    const listFile = join(path, PROTECTION_LIST_FILE);
    if (this.secured.get(slug) === list && (await isFile(hook)) && (await isFile(listFile))) return;
    const hidden = await git(['--git-dir', path, 'config', '--get-all', 'transfer.hideRefs']).catch(() => '');
    if (!hidden.split('\n').includes(HIDDEN_REF_NAMESPACE)) {
      await git(['--git-dir', path, 'config', '--add', 'transfer.hideRefs', HIDDEN_REF_NAMESPACE]);
    }
    await mkdir(join(path, 'hooks'), { recursive: true });
    // The list first: a hook without its list refuses every branch push, never allows one.
    await writeIfChanged(listFile, list, 0o644);
    await writeIfChanged(hook, UPDATE_HOOK, 0o755);
    this.secured.set(slug, list);
  }

  async remove(slug: string): Promise<void> {
    const target = this.repositoryPath(slug);
    this.secured.delete(slug);
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
