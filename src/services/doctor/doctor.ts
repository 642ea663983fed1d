/**
 * `divio doctor`: what this machine needs to run divio projects, each check with how to fix it.
 */
import { statfs } from 'node:fs/promises';
import { execa } from 'execa';
import { describeDockerHost, docker } from '../../core/docker.js';
import { formatBytes } from '../../core/io.js';
import { findFreePort, isPortFree } from '../../core/ports.js';
import { platformChecks } from './platform-checks.js';

export interface Check {
  name: string;
  ok: boolean;
  /** A failing required check makes doctor exit non-zero. */
  required: boolean;
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  ok: boolean;
  checks: Check[];
}

const MIN_FREE_DISK = 2 * 1024 ** 3;
const WARN_FREE_DISK = 10 * 1024 ** 3;

async function versionOf(file: string, args: string[]): Promise<string | undefined> {
  try {
    const result = await execa(file, args, { timeout: 20_000 });
    return result.stdout.trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

async function checkDocker(env: NodeJS.ProcessEnv): Promise<{ check: Check; rootDir?: string }> {
  try {
    const info = (await docker().info()) as { ServerVersion?: string; DockerRootDir?: string; Swarm?: { LocalNodeState?: string } };
    return {
      check: { name: 'Docker engine', ok: true, required: true, detail: `${info.ServerVersion ?? '?'} at ${describeDockerHost(env)}` },
      rootDir: info.DockerRootDir,
    };
  } catch (error) {
    return {
      check: {
        name: 'Docker engine',
        ok: false,
        required: true,
        detail: `not answering at ${describeDockerHost(env)} (${(error as Error).message})`,
        fix: 'Start Docker: `sudo systemctl start docker` (Linux) or open Docker Desktop; check DOCKER_HOST.',
      },
    };
  }
}

export async function runDoctor(env: NodeJS.ProcessEnv = process.env): Promise<DoctorReport> {
  const [dockerResult, v2, v1, git] = await Promise.all([
    checkDocker(env),
    versionOf('docker', ['compose', 'version', '--short']),
    versionOf('docker-compose', ['version', '--short']),
    versionOf('git', ['--version']),
  ]);
  const checks: Check[] = [dockerResult.check];
  const anyCompose = Boolean(v2 ?? v1);
  const chosen = env.DIVIO_COMPOSE?.trim();
  checks.push({
    name: 'Compose v2 (docker compose)',
    ok: Boolean(v2),
    required: !v1 || chosen === 'docker compose',
    detail: v2 ? `${v2}${chosen ? '' : ' (used)'}` : 'not found',
    fix: v2 ? undefined : 'Install the Docker Compose plugin: https://docs.docker.com/compose/install/linux/',
  });
  checks.push({
    name: 'Compose v1 (docker-compose)',
    ok: Boolean(v1),
    required: !anyCompose || chosen === 'docker-compose',
    detail: v1 ? `${v1}${!v2 && !chosen ? ' (used)' : ''}` : v2 ? 'not found (optional: v2 is used)' : 'not found',
    fix: v1 ? undefined : v2 ? undefined : 'Install Compose v2 (preferred), or v1 with `apt-get install docker-compose`.',
  });
  checks.push({
    name: 'git',
    ok: Boolean(git),
    required: true,
    detail: git ?? 'not found',
    fix: git ? undefined : 'Install git: `apt-get install git` or https://git-scm.com/downloads',
  });

  const defaultFree = await isPortFree(8000);
  const free = await findFreePort({ preferred: 8000 });
  checks.push({
    name: 'Free ports',
    ok: true,
    required: false,
    detail: defaultFree ? '127.0.0.1:8000 is free for local environments' : `127.0.0.1:8000 is taken; local environments will use ${free} and up`,
  });

  for (const [label, path] of [
    ['Disk (current directory)', process.cwd()],
    ['Disk (Docker data)', dockerResult.rootDir],
  ] as const) {
    if (!path) continue;
    try {
      const stats = await statfs(path);
      const bytes = stats.bavail * stats.bsize;
      checks.push({
        name: label,
        ok: bytes >= MIN_FREE_DISK,
        required: bytes < MIN_FREE_DISK,
        detail: `${formatBytes(bytes)} free at ${path}${bytes < WARN_FREE_DISK && bytes >= MIN_FREE_DISK ? ' (low)' : ''}`,
        fix: bytes < MIN_FREE_DISK ? 'Free disk space: `docker system prune` removes unused images and build cache.' : undefined,
      });
    } catch {
      // The Docker data directory may live on another machine (remote DOCKER_HOST): nothing to measure.
    }
  }
  checks.push(...(await platformChecks(env)));
  return { ok: checks.every((c) => c.ok || !c.required), checks };
}
