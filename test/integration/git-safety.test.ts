/**
 * Git safety on the shared test platform, with plain git as a user runs it: a force-push or a
 * deletion of an environment's branch is refused by git (with the branch, why, and how to allow it)
 * until `configure ENV --allow-force-push`; other branches are free; every deployment leaves a
 * hidden ref at its commit, so after a force-push, a deleted branch and `git gc --prune=now` in the
 * bare repository the deployed commit is still there and a rollback to it still works; clients
 * neither see those refs nor can push or delete them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';
import { createUser } from '../helpers/api.js';

const GIT_IDENTITY = ['-c', 'user.name=t', '-c', 'user.email=t@example.invalid'];

describeWithDocker('git safety', () => {
  const platform = usePlatform();
  let parent: string;
  let dir: string;
  let env: Record<string, string>;
  const slug = `gits-${Math.random().toString(36).slice(2, 8)}`;
  const cli = (args: string[]) => divio(args, { cwd: dir, env, timeout: 900_000 });
  const gitIn = (args: string[]) =>
    execa('git', args, { cwd: dir, env: { ...process.env, ...env, GIT_TERMINAL_PROMPT: '0' }, reject: false, stdin: 'ignore' });
  /** git in the platform's bare repository itself, as an operator on the host would run it. */
  const bareGit = (args: string[]) =>
    execa('git', ['--git-dir', join(platform().dataDir, 'git', `${slug}.git`), ...args], { reject: false, stdin: 'ignore' });
  const remoteHead = async (branch: string) => (await gitIn(['ls-remote', 'origin', `refs/heads/${branch}`])).stdout.split(/\s/)[0] ?? '';
  const commitFile = async (file: string, content: string) => {
    await writeFile(join(dir, file), content);
    expect((await gitIn(['add', file])).exitCode).toBe(0);
    expect((await gitIn([...GIT_IDENTITY, 'commit', '-qm', `${file}: ${content}`])).exitCode).toBe(0);
    return (await gitIn(['rev-parse', 'HEAD'])).stdout.trim();
  };

  let deployedCommit: string;
  let deploymentId: string;

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'gitsafe');
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-git-safety-'));
    dir = join(parent, slug);
    const created = await divio(['project', 'create', slug], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);
    // test deploys a branch of its own, so its setting is not mixed with live's (main).
    expect((await gitIn(['checkout', '-q', '-b', 'develop'])).exitCode).toBe(0);
    await commitFile('DEVELOP.md', 'first');
    const pushed = await gitIn(['push', '-q', 'origin', 'develop']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const configured = await cli(['project', 'configure', 'test', '--branch', 'develop', '--json']);
    expect(configured.exitCode, configured.stderr).toBe(0);
    expect(json(configured)).toMatchObject({ name: 'test', branch: 'develop', allowForcePush: false });
  });
  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it("refuses a force-push and a deletion of test's branch, saying which branch, why and how to allow it; the branch is unchanged", async () => {
    const before = await remoteHead('develop');
    expect((await gitIn(['reset', '-q', '--hard', 'main'])).exitCode).toBe(0);
    await commitFile('DEVELOP.md', 'rewritten');
    const forced = await gitIn(['push', '--force', 'origin', 'develop']);
    expect(forced.exitCode).not.toBe(0);
    expect(forced.stderr).toContain('refusing to rewrite the branch develop');
    expect(forced.stderr).toContain('not a fast-forward');
    expect(forced.stderr).toContain('the environment test deploys from develop and does not allow force pushes');
    expect(forced.stderr).toContain('divio project configure test --allow-force-push');
    expect(forced.stderr).not.toContain('configure live');
    expect(await remoteHead('develop')).toBe(before);

    const deleted = await gitIn(['push', 'origin', ':develop']);
    expect(deleted.exitCode).not.toBe(0);
    expect(deleted.stderr).toContain('refusing to delete the branch develop');
    expect(await remoteHead('develop')).toBe(before);

    // live still deploys main: rewriting it (here with a commit unrelated to it) names live.
    const orphan = (await gitIn([...GIT_IDENTITY, 'commit-tree', 'HEAD^{tree}', '-m', 'unrelated'])).stdout.trim();
    expect(orphan).toMatch(/^[0-9a-f]{40}$/);
    const mainBefore = await remoteHead('main');
    const main = await gitIn(['push', '--force', 'origin', `${orphan}:refs/heads/main`]);
    expect(main.exitCode).not.toBe(0);
    expect(main.stderr).toContain('divio project configure live --allow-force-push');
    expect(await remoteHead('main')).toBe(mainBefore);
  });

  it('leaves branches no environment deploys alone', async () => {
    expect((await gitIn(['push', '-q', 'origin', 'develop:feature'])).exitCode).toBe(0);
    const forced = await gitIn(['push', '-q', '--force', 'origin', 'main:feature']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(await remoteHead('feature')).toBe((await gitIn(['rev-parse', 'main'])).stdout.trim());
    expect((await gitIn(['push', '-q', 'origin', ':feature'])).exitCode).toBe(0);
  });

  it('accepts the force-push once test allows it (configure test --allow-force-push), and refuses again with --no-allow-force-push', async () => {
    const allowed = await cli(['project', 'configure', 'test', '--allow-force-push']);
    expect(allowed.exitCode, allowed.stderr).toBe(0);
    expect(allowed.stdout).toContain('may now rewrite or delete the branch develop');
    const forced = await gitIn(['push', '-q', '--force', 'origin', 'develop']);
    expect(forced.exitCode, forced.stderr).toBe(0);
    const local = (await gitIn(['rev-parse', 'develop'])).stdout.trim();
    expect(await remoteHead('develop')).toBe(local);

    const refused = await cli(['project', 'configure', 'test', '--no-allow-force-push', '--json']);
    expect(refused.exitCode, refused.stderr).toBe(0);
    expect(json(refused)).toMatchObject({ name: 'test', allowForcePush: false });
    expect((await gitIn(['push', 'origin', ':develop'])).exitCode).not.toBe(0);
    expect(await remoteHead('develop')).toBe(local);
  });

  it('records each deployment as a ref at its commit in the bare repository', async () => {
    deployedCommit = await commitFile('DEPLOYED.md', 'the deployed version');
    expect((await gitIn(['push', '-q', 'origin', 'develop'])).exitCode).toBe(0);
    const deployed = await cli(['project', 'deploy', 'test', '--json']);
    expect(deployed.exitCode, deployed.stderr).toBe(0);
    const deployment = json(deployed);
    expect(deployment).toMatchObject({ state: 'succeeded', commit: deployedCommit });
    deploymentId = deployment.id;
    const ref = await bareGit(['rev-parse', '--verify', `refs/divio/deployments/${deploymentId}`]);
    expect(ref.exitCode, ref.stderr).toBe(0);
    expect(ref.stdout.trim()).toBe(deployedCommit);
  });

  it('keeps the deployed commit through a force-push, a deleted branch and git gc --prune=now; rollback to it still works', async () => {
    expect(deploymentId, 'the deployment of the previous test').toBeTruthy();
    expect((await cli(['project', 'configure', 'test', '--allow-force-push'])).exitCode).toBe(0);
    expect((await gitIn(['push', '-q', '--force', 'origin', 'main:develop'])).exitCode).toBe(0);
    expect((await gitIn(['push', '-q', 'origin', ':develop'])).exitCode).toBe(0);
    expect(await remoteHead('develop')).toBe('');
    const branches = (await bareGit(['branch', '--contains', deployedCommit])).stdout.trim();
    expect(branches, 'no branch holds the deployed commit any more').toBe('');

    expect((await bareGit(['reflog', 'expire', '--expire=now', '--all'])).exitCode).toBe(0);
    const gc = await bareGit(['gc', '--quiet', '--prune=now']);
    expect(gc.exitCode, gc.stderr).toBe(0);
    const kept = await bareGit(['cat-file', '-e', `${deployedCommit}^{commit}`]);
    expect(kept.exitCode, kept.stderr).toBe(0);
    expect((await bareGit(['show', `${deployedCommit}:DEPLOYED.md`])).stdout).toBe('the deployed version');

    const rolled = await cli(['project', 'rollback', 'test', deploymentId, '--json']);
    expect(rolled.exitCode, rolled.stderr + rolled.stdout).toBe(0);
    expect(json(rolled)).toMatchObject({ kind: 'rollback', state: 'succeeded', commit: deployedCommit });
    // The rollback is a deployment too, with its own ref.
    const rollbackRef = await bareGit(['rev-parse', '--verify', `refs/divio/deployments/${json(rolled).id}`]);
    expect(rollbackRef.stdout.trim()).toBe(deployedCommit);
  });

  it('hides the deployment refs from clients, who can neither push nor delete them', async () => {
    expect(deploymentId, 'the deployment of an earlier test').toBeTruthy();
    const listed = await gitIn(['ls-remote', 'origin']);
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('refs/heads/main');
    expect(listed.stdout).not.toContain('refs/divio');

    for (const target of ['HEAD:refs/divio/deployments/x', `HEAD:refs/divio/deployments/${deploymentId}`, `:refs/divio/deployments/${deploymentId}`]) {
      const pushed = await gitIn(['push', '--force', 'origin', target]);
      expect(pushed.exitCode, `${target}: ${pushed.stderr}`).not.toBe(0);
    }
    expect((await bareGit(['rev-parse', '--verify', '--quiet', 'refs/divio/deployments/x'])).exitCode).not.toBe(0);
    expect((await bareGit(['rev-parse', `refs/divio/deployments/${deploymentId}`])).stdout.trim()).toBe(deployedCommit);
    // Nor fetch one by name.
    const fetched = await gitIn(['fetch', 'origin', `refs/divio/deployments/${deploymentId}`]);
    expect(fetched.exitCode).not.toBe(0);
  });
});
