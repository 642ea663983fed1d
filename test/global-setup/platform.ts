/**
 * One platform for the whole test run, started through the built CLI like an operator would
 * (`divio platform start --json`), under a name, port, data dir and config dir of its own so it
 * never touches a developer's platform or another run's. Tests get it with `usePlatform()`
 * (test/helpers/platform.ts), which reads what is provided here:
 *
 *   inject('platform')            { endpoint, configDir, dataDir, name, port } or null
 *   inject('platformUnavailable') why it is null (no Docker, not needed, start failed), else null
 *
 * The operator's token is in `configDir/credentials.json` (`operatorToken()` reads it). Teardown
 * removes the platform: services (apps included), secrets, network and data.
 *
 * It is only started when a test file of this run uses test/helpers/platform; DIVIO_TEST_PLATFORM=1
 * forces it, =0 never starts it. No Docker: null, except under REQUIRE_DOCKER=1, which fails.
 */
import { execa } from 'execa';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { docker } from '../../src/core/docker.js';
import { findFreePort } from '../../src/core/ports.js';
import { removePlatform } from '../../src/services/platform/remove.js';

export interface TestPlatform {
  /** The API's URL (http://127.0.0.1:PORT); the registry and git answer there too. */
  endpoint: string;
  /** A DIVIO_CONFIG_DIR whose credentials.json holds the operator's token for `endpoint`. */
  configDir: string;
  dataDir: string;
  /** Prefix of the platform's Swarm objects (services NAME-api, NAME-postgres, network NAME-net, …). */
  name: string;
  /** The router's public port. */
  port: number;
}

declare module 'vitest' {
  export interface ProvidedContext {
    platform: TestPlatform | null;
    platformUnavailable: string | null;
  }
}

const REPO_ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const BIN = join(REPO_ROOT, 'bin', 'run.js');
/** Test platforms are named `divio-test-<pid>-<random>`: a crashed run's leftovers are found by its dead pid. */
const NAME_PREFIX = 'divio-test-';

function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'pipe', timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/** Whether a test file of this run uses the platform helper (so unit-only runs start nothing). */
async function platformWanted(project: TestProject): Promise<boolean> {
  if (process.env.DIVIO_TEST_PLATFORM === '1') return true;
  try {
    // The run's file filters (vitest keeps them on the instance; absent means every file).
    const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
    const specs = await project.vitest.globTestSpecifications(filters);
    for (const spec of specs) {
      const text = await readFile(spec.moduleId, 'utf8');
      if (/helpers\/platform(\.js)?['"]/.test(text)) return true;
    }
    return false;
  } catch {
    return true;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove test platforms left by runs that died before their teardown. */
async function removeLeftovers(): Promise<void> {
  let networks: { Name: string }[];
  try {
    networks = await docker().listNetworks({ filters: { name: [NAME_PREFIX] } });
  } catch {
    return;
  }
  for (const network of networks) {
    const match = new RegExp(`^(${NAME_PREFIX}([0-9a-z]+)-[0-9a-z]+)-net$`).exec(network.Name);
    if (!match) continue;
    const pid = Number.parseInt(match[2]!, 36);
    if (pidAlive(pid)) continue;
    await removePlatform(match[1]!, { keepData: true }).catch(() => {});
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const unavailable = (reason: string) => {
    project.provide('platform', null);
    project.provide('platformUnavailable', reason);
  };
  if (process.env.DIVIO_TEST_PLATFORM === '0') {
    unavailable('DIVIO_TEST_PLATFORM=0: no shared test platform in this run');
    return undefined;
  }
  if (!dockerAnswers()) {
    if (process.env.REQUIRE_DOCKER === '1') {
      throw new Error('REQUIRE_DOCKER=1 but no Docker engine answers, so the test platform cannot start (run ../shared/ci/docker-up.sh)');
    }
    unavailable('no Docker engine answers (run ../shared/ci/docker-up.sh, or set REQUIRE_DOCKER=1 to fail instead)');
    return undefined;
  }
  if (!(await platformWanted(project))) {
    unavailable('no test file of this run uses the platform (DIVIO_TEST_PLATFORM=1 starts it anyway)');
    return undefined;
  }
  if (!existsSync(join(REPO_ROOT, 'dist', 'commands', 'platform', 'start.js'))) {
    unavailable('divio platform start failed: the CLI is not built (run `npm run build` first)');
    return undefined;
  }

  await removeLeftovers();
  const name = `${NAME_PREFIX}${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  const dataDir = await mkdtemp(join(tmpdir(), 'divio-test-platform-'));
  const configDir = await mkdtemp(join(tmpdir(), 'divio-test-operator-'));
  const port = await findFreePort({ range: [18700, 18799], host: '0.0.0.0' });
  const teardown = async () => {
    await removePlatform(name, { dataDir, keepData: false }).catch((error: unknown) => {
      console.warn(`[platform teardown] ${(error as Error).message}`);
    });
    await rm(configDir, { recursive: true, force: true });
  };

  const started = Date.now();
  const result = await execa('node', [BIN, 'platform', 'start', '--data-dir', dataDir, '--port', String(port), '--name', name, '--json'], {
    cwd: REPO_ROOT,
    env: { DIVIO_CONFIG_DIR: configDir, NO_COLOR: '1', CI: 'true' },
    stdin: 'ignore',
    reject: false,
    timeout: 15 * 60_000,
  });
  if (result.exitCode !== 0) {
    const output = `${String(result.stdout)}\n${String(result.stderr)}`.trim();
    console.error(`[platform] divio platform start failed (exit ${result.exitCode}):\n${output}`);
    unavailable(`divio platform start failed (exit ${result.exitCode}): ${output.split('\n').slice(-15).join('\n')}`);
    return teardown;
  }
  const report = JSON.parse(String(result.stdout)) as { endpoint: string; image: { built: boolean } };
  console.log(
    `[platform] ${name} at ${report.endpoint} in ${Math.round((Date.now() - started) / 1000)}s` +
      `${report.image.built ? ' (image built)' : ''}; data ${dataDir}`,
  );
  project.provide('platform', { endpoint: report.endpoint, configDir, dataDir, name, port });
  project.provide('platformUnavailable', null);
  return teardown;
}
