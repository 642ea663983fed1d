/**
 * git, run as a child with argument arrays. The platform token reaches git through environment
 * variables (GIT_CONFIG_*), never the command line or .git/config, so it shows in no process list
 * and no file.
 */
import { execa } from 'execa';
import { DivioError, ExitCode } from './errors.js';

export async function git(cwd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const result = await execa('git', args, {
    cwd,
    env: { GIT_TERMINAL_PROMPT: '0', ...env },
    reject: false,
    stdin: 'ignore',
  });
  if (result.exitCode !== 0) {
    const output = `${result.stderr}`.trim().split('\n').slice(-5).join('\n');
    throw new DivioError(`git ${args[0]} failed${output ? `:\n${output}` : ''}`, { exitCode: ExitCode.failure });
  }
  return `${result.stdout}`;
}

/** Environment that makes git send the token as HTTP Basic credentials to URLs under `endpoint`. */
export function gitAuthEnv(endpoint: string, token: string): Record<string, string> {
  const basic = Buffer.from(`divio:${token}`).toString('base64');
  return {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: `http.${endpoint.replace(/\/+$/, '')}/.extraHeader`,
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}`,
  };
}

/** `git init` + first commit; uses the user's git identity, or a stand-in when they have none. */
export async function initialCommit(root: string, message: string, fallbackName: string): Promise<string> {
  await git(root, ['init', '--quiet', '--initial-branch=main']);
  await git(root, ['add', '--all']);
  const hasIdentity = await git(root, ['config', 'user.email']).then(
    (v) => v.trim() !== '',
    () => false,
  );
  const identity = hasIdentity ? [] : ['-c', `user.name=${fallbackName}`, '-c', `user.email=${fallbackName}@users.divio.invalid`];
  await git(root, [...identity, 'commit', '--quiet', '--no-verify', '-m', message]);
  return (await git(root, ['rev-parse', 'HEAD'])).trim();
}

/**
 * Later `git push`/`git pull` by hand authenticate through `divio git-credential`, which reads the
 * stored token: the token itself never lands in the repository's config.
 */
export async function configureRemote(root: string, remoteUrl: string, endpoint: string): Promise<void> {
  await git(root, ['remote', 'add', 'origin', remoteUrl]);
  await configureCredentialHelper(root, endpoint);
}

export async function configureCredentialHelper(root: string, endpoint: string): Promise<void> {
  const helper = `!'${process.execPath}' '${process.argv[1] ?? 'divio'}' git-credential`;
  await git(root, ['config', `credential.${endpoint.replace(/\/+$/, '')}.helper`, helper]);
}
