/**
 * The repository side of git safety (src/platform/api/git/protection.ts), with the real git CLI
 * pushing to a bare repository on local disk: the update hook refuses rewriting or deleting a
 * protected branch and says how to allow it, leaves other branches alone, treats hostile ref names
 * as data; deployment refs are hidden, cannot be pushed, and keep their commit through a
 * force-push, a deleted branch and `git gc --prune=now`.
 */
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  PROTECTION_LIST_FILE,
  branchProtections,
  deploymentRef,
  renderProtectionList,
} from '../../src/platform/api/git/protection.js';
import { BareRepositories, recordDeploymentRef } from '../../src/platform/api/git/repositories.js';

let tmp: string;
let repos: BareRepositories;
let gitEnv: Record<string, string>;

async function git(args: string[], cwd: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const result = await execa('git', args, { cwd, env: gitEnv, extendEnv: false, reject: false, stdin: 'ignore' });
  return { exitCode: result.exitCode ?? 1, stdout: `${result.stdout}`.trim(), stderr: `${result.stderr}` };
}

async function gitOk(args: string[], cwd: string): Promise<string> {
  const result = await git(args, cwd);
  if (result.exitCode !== 0) throw new Error(`git ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

async function commit(cwd: string, file: string, content: string): Promise<string> {
  await writeFile(join(cwd, file), content);
  await gitOk(['add', file], cwd);
  await gitOk(['commit', '--quiet', '-m', `${file}: ${content}`], cwd);
  return gitOk(['rev-parse', 'HEAD'], cwd);
}

/** A bare repository secured with PROTECTIONS and a clone with main and develop pushed to it. */
async function setUp(slug: string, protections: Parameters<BareRepositories['secure']>[1]) {
  await repos.create(slug);
  await repos.secure(slug, protections);
  const bare = repos.repositoryPath(slug);
  const work = join(tmp, `${slug}-work`);
  await gitOk(['init', '--quiet', '--initial-branch=main', work], tmp);
  const base = await commit(work, 'a.txt', 'one');
  await gitOk(['remote', 'add', 'origin', bare], work);
  await gitOk(['push', '--quiet', 'origin', 'main', 'main:develop'], work);
  return { bare, work, base };
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'divio-git-protection-'));
  gitEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: tmp,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_AUTHOR_NAME: 't',
    GIT_AUTHOR_EMAIL: 't@example.invalid',
    GIT_COMMITTER_NAME: 't',
    GIT_COMMITTER_EMAIL: 't@example.invalid',
  };
  repos = new BareRepositories(join(tmp, 'repos'));
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the protection list', () => {
  it('protects the branch of each environment that does not allow force pushes, one "BRANCH ENV" a line', () => {
    const protections = branchProtections([
      { name: 'test', branch: 'develop', allow_force_push: false },
      { name: 'live', branch: 'main', allow_force_push: false },
    ]);
    expect(protections).toEqual([
      { branch: 'develop', environment: 'test' },
      { branch: 'main', environment: 'live' },
    ]);
    expect(renderProtectionList(protections)).toBe('develop test\nmain live\n');
  });

  it('leaves out an environment that allows force pushes; both on one branch give two lines', () => {
    expect(
      branchProtections([
        { name: 'test', branch: 'main', allow_force_push: true },
        { name: 'live', branch: 'main', allow_force_push: false },
      ]),
    ).toEqual([{ branch: 'main', environment: 'live' }]);
    const both = branchProtections([
      { name: 'test', branch: 'main', allow_force_push: false },
      { name: 'live', branch: 'main', allow_force_push: false },
    ]);
    expect(renderProtectionList(both)).toBe('main live\nmain test\n');
    expect(renderProtectionList([])).toBe('');
  });

  it('refuses a branch or environment that would not split into one "BRANCH ENV" line', () => {
    for (const branch of ['with space', 'tab\there', 'new\nline', '', '-flag', 'a..b', 'x.lock']) {
      expect(() => renderProtectionList([{ branch, environment: 'test' }]), branch).toThrow(/not a branch name/);
    }
    expect(() => renderProtectionList([{ branch: 'main', environment: 'staging' as 'test' }])).toThrow(/not an environment/);
  });

  it('names deployment refs by numeric id only', () => {
    expect(deploymentRef('42')).toBe('refs/divio/deployments/42');
    for (const id of ['', '0', '../heads/main', '1/2', '12a', '1 2']) expect(() => deploymentRef(id), id).toThrow(/not a deployment id/);
  });
});

describe('pushes to a secured repository', () => {
  it('refuse a non-fast-forward push to a protected branch, naming the branch, why, and how to allow it', async () => {
    const { bare, work, base } = await setUp('ff', [{ branch: 'develop', environment: 'test' }]);
    await commit(work, 'b.txt', 'fast-forward');
    expect((await git(['push', 'origin', 'HEAD:develop'], work)).exitCode).toBe(0);
    const before = await gitOk(['rev-parse', 'refs/heads/develop'], bare);

    await gitOk(['reset', '--quiet', '--hard', base], work);
    await commit(work, 'c.txt', 'rewritten');
    const forced = await git(['push', '--force', 'origin', 'HEAD:develop'], work);
    expect(forced.exitCode).not.toBe(0);
    expect(forced.stderr).toContain('refusing to rewrite the branch develop');
    expect(forced.stderr).toContain('not a fast-forward');
    expect(forced.stderr).toContain('the environment test deploys from develop and does not allow force pushes');
    expect(forced.stderr).toContain('divio project configure test --allow-force-push');
    expect(forced.stderr).toMatch(/\[remote rejected\] HEAD -> develop/);
    expect(await gitOk(['rev-parse', 'refs/heads/develop'], bare)).toBe(before);

    const deleted = await git(['push', 'origin', ':develop'], work);
    expect(deleted.exitCode).not.toBe(0);
    expect(deleted.stderr).toContain('refusing to delete the branch develop');
    expect(await gitOk(['rev-parse', 'refs/heads/develop'], bare)).toBe(before);
  });

  it('leave other branches alone, in the same push too (the refusal is per ref)', async () => {
    const { bare, work, base } = await setUp('others', [{ branch: 'develop', environment: 'test' }]);
    await commit(work, 'b.txt', 'on both');
    await gitOk(['push', '--quiet', 'origin', 'HEAD:main', 'HEAD:develop'], work);
    await gitOk(['reset', '--quiet', '--hard', base], work);
    const rewritten = await commit(work, 'c.txt', 'rewritten');
    const both = await git(['push', '--force', 'origin', 'HEAD:main', 'HEAD:develop'], work);
    expect(both.exitCode).not.toBe(0);
    expect(await gitOk(['rev-parse', 'refs/heads/main'], bare)).toBe(rewritten);
    expect(await gitOk(['rev-parse', 'refs/heads/develop'], bare)).not.toBe(rewritten);
    // A new branch, and deleting an unprotected one.
    expect((await git(['push', 'origin', 'HEAD:feature'], work)).exitCode).toBe(0);
    expect((await git(['push', 'origin', ':feature'], work)).exitCode).toBe(0);
  });

  it('are allowed to rewrite and delete once the environment allows force pushes (the list is rewritten)', async () => {
    const { bare, work, base } = await setUp('allowed', [{ branch: 'develop', environment: 'test' }]);
    await commit(work, 'b.txt', 'x');
    await gitOk(['push', '--quiet', 'origin', 'HEAD:develop'], work);
    await gitOk(['reset', '--quiet', '--hard', base], work);
    const rewritten = await commit(work, 'c.txt', 'y');
    expect((await git(['push', '--force', 'origin', 'HEAD:develop'], work)).exitCode).not.toBe(0);

    await repos.secure('allowed', []);
    expect(await readFile(join(bare, PROTECTION_LIST_FILE), 'utf8')).toBe('');
    expect((await git(['push', '--force', 'origin', 'HEAD:develop'], work)).exitCode).toBe(0);
    expect(await gitOk(['rev-parse', 'refs/heads/develop'], bare)).toBe(rewritten);
    expect((await git(['push', 'origin', ':develop'], work)).exitCode).toBe(0);

    // And protected again: a branch pushed anew is created (nothing to rewrite), then guarded.
    await repos.secure('allowed', [{ branch: 'develop', environment: 'live' }]);
    expect((await git(['push', 'origin', 'HEAD:develop'], work)).exitCode).toBe(0);
    const again = await git(['push', 'origin', ':develop'], work);
    expect(again.exitCode).not.toBe(0);
    expect(again.stderr).toContain('divio project configure live --allow-force-push');
  });

  it('treat hostile branch names as data: nothing in them is run', async () => {
    const { bare, work } = await setUp('hostile', [{ branch: 'main', environment: 'live' }]);
    const names = ['x$(touch${IFS}pwned)', 'y`touch${IFS}pwned2`', "z';touch${IFS}pwned3;'", 'main$(id)', '-main'];
    for (const name of names) {
      const pushed = await git(['push', 'origin', `HEAD:refs/heads/${name}`], work);
      expect(pushed.exitCode, `${name}: ${pushed.stderr}`).toBe(0);
      expect((await git(['push', 'origin', `:refs/heads/${name}`], work)).exitCode, name).toBe(0);
    }
    for (const dir of [bare, work, tmp, join(bare, 'hooks')]) {
      expect((await readdir(dir)).filter((entry) => entry.startsWith('pwned')), dir).toEqual([]);
    }
  });

  it('refuse every branch push when the list is missing, rather than allowing a rewrite', async () => {
    const { bare, work } = await setUp('nolist', []);
    await rm(join(bare, PROTECTION_LIST_FILE));
    await commit(work, 'b.txt', 'z');
    const pushed = await git(['push', 'origin', 'HEAD:main'], work);
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.stderr).toContain('list of protected branches is missing');
    // The next secure puts it back, even though the list itself did not change.
    await repos.secure('nolist', []);
    expect((await git(['push', 'origin', 'HEAD:main'], work)).exitCode).toBe(0);
  });

  it('bring a repository made before protection existed up to date', async () => {
    const slug = 'legacy';
    const bare = repos.repositoryPath(slug);
    await gitOk(['init', '--quiet', '--bare', '--initial-branch=main', bare], tmp);
    await repos.secure(slug, [{ branch: 'main', environment: 'live' }]);
    expect(await gitOk(['config', '--get-all', 'transfer.hideRefs'], bare)).toBe('refs/divio/');
    expect((await stat(join(bare, 'hooks', 'update'))).mode & 0o111).not.toBe(0);
    expect(await readFile(join(bare, PROTECTION_LIST_FILE), 'utf8')).toBe('main live\n');
    // Secured twice: still one hideRefs value.
    await repos.secure(slug, [{ branch: 'main', environment: 'live' }]);
    await new BareRepositories(repos.root).secure(slug, [{ branch: 'main', environment: 'live' }]);
    expect(await gitOk(['config', '--get-all', 'transfer.hideRefs'], bare)).toBe('refs/divio/');
  });
});

describe('deployment refs', () => {
  it('keep the deployed commit through a force-push, a deleted branch and gc --prune=now', async () => {
    const { bare, work, base } = await setUp('kept', []);
    const deployed = await commit(work, 'deployed.txt', 'the deployed version');
    await gitOk(['push', '--quiet', 'origin', 'HEAD:develop'], work);
    await recordDeploymentRef(bare, '7', deployed);
    expect(await gitOk(['rev-parse', 'refs/divio/deployments/7'], bare)).toBe(deployed);

    await gitOk(['reset', '--quiet', '--hard', base], work);
    await commit(work, 'other.txt', 'rewritten');
    await gitOk(['push', '--quiet', '--force', 'origin', 'HEAD:develop'], work);
    await gitOk(['push', '--quiet', 'origin', ':develop'], work);
    await gitOk(['reflog', 'expire', '--expire=now', '--all'], bare);
    await gitOk(['gc', '--quiet', '--prune=now'], bare);
    expect((await git(['cat-file', '-e', `${deployed}^{commit}`], bare)).exitCode).toBe(0);
    expect(await gitOk(['show', `${deployed}:deployed.txt`], bare)).toBe('the deployed version');

    // Without a ref the same history is gone: the check above can fail.
    await gitOk(['update-ref', '-d', 'refs/divio/deployments/7'], bare);
    await gitOk(['gc', '--quiet', '--prune=now'], bare);
    expect((await git(['cat-file', '-e', `${deployed}^{commit}`], bare)).exitCode).not.toBe(0);
  });

  it('are hidden from ls-remote and clones, and cannot be pushed or deleted by a client', async () => {
    const { bare, work, base } = await setUp('hidden', []);
    await recordDeploymentRef(bare, '3', base);
    const listed = await gitOk(['ls-remote', 'origin'], work);
    expect(listed).toContain('refs/heads/main');
    expect(listed).not.toContain('refs/divio');

    await commit(work, 'evil.txt', 'x');
    for (const target of ['HEAD:refs/divio/deployments/3', 'HEAD:refs/divio/deployments/x', ':refs/divio/deployments/3']) {
      const pushed = await git(['push', '--force', 'origin', target], work);
      expect(pushed.exitCode, target).not.toBe(0);
    }
    expect(await gitOk(['rev-parse', 'refs/divio/deployments/3'], bare)).toBe(base);
    expect((await git(['rev-parse', '--verify', '--quiet', 'refs/divio/deployments/x'], bare)).exitCode).not.toBe(0);
  });

  it('refuse anything but a commit id', async () => {
    const { bare } = await setUp('badref', []);
    await expect(recordDeploymentRef(bare, '1', 'main')).rejects.toThrow(/not a commit id/);
    await expect(recordDeploymentRef(bare, '../x', '0'.repeat(40))).rejects.toThrow();
  });
});
