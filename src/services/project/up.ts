/**
 * `divio project up`: bring the local environment to the state test and live run in, and return only
 * once the web health check answers.
 */
import { execa } from 'execa';
import { childFailed, runShown } from '../../core/child-output.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { probeHttp } from '../../core/http-probe.js';
import type { IO } from '../../core/io.js';
import { findFreePort, isPortFree } from '../../core/ports.js';
import { readLocalState, writeLocalState } from '../../core/project.js';
import { demuxToText, docker, runningServiceContainer } from '../../core/docker.js';
import { syncComposeFile, localDomain, type ComposeFileStatus } from './compose-file.js';
import {
  publishedWebPort,
  webUrl,
  writeLiveConfigOverlay,
  type LocalEnvironment,
} from './local-environment.js';

export interface UpOptions {
  build?: boolean;
  liveConfig?: boolean;
  /** Run divio.yaml's release command (migrations) before waiting for health; default true. */
  release?: boolean;
  /** How long to wait for the health check. */
  timeoutMs?: number;
}

export interface UpResult {
  app: string;
  url: string;
  port: number;
  liveConfig: boolean;
  composeFile: ComposeFileStatus;
  health: unknown;
}

const PORT_TAKEN = /port is already allocated|address already in use|bind: address/i;

export async function up(local: LocalEnvironment, io: IO, options: UpOptions = {}): Promise<UpResult> {
  const { project } = local;
  const liveConfig = options.liveConfig ?? false;
  const composeFile = await syncComposeFile(project);
  if (composeFile.status === 'created') io.info(`Wrote ${composeFile.path} from divio.yaml.`);
  if (composeFile.status === 'updated') io.info(`Updated ${composeFile.path} from divio.yaml.`);
  if (composeFile.status === 'kept-user-edits') {
    io.warn(
      `docker-compose.yml has your edits, so divio used it as it is. What divio.yaml would generate now is in ` +
        `${composeFile.generatedCopy}: merge what you need, or delete docker-compose.yml to have it generated again.`,
    );
  }
  if (liveConfig) await writeLiveConfigOverlay(project);

  const containerPort = project.manifest.web.port;
  let port = await chooseWebPort(local, containerPort);
  for (let attempt = 1; ; attempt++) {
    const args = ['up', '--detach', '--remove-orphans'];
    if (options.build) args.push('--build');
    const compose = await local.compose({ liveConfig, webPort: port });
    try {
      await runShown(
        io,
        `Starting ${project.slug}${liveConfig ? ' with the live configuration' : ''}`,
        compose.run(args, { buffer: false, stdin: 'ignore' }),
        (failure) => {
          const taken = failure.output.some((l) => PORT_TAKEN.test(l));
          return Object.assign(
            childFailed(
              taken ? `port ${port} was taken while starting ${project.slug}` : `${compose.tool.argv.join(' ')} up failed`,
              'Read the output above; `divio project logs` shows the services\' logs, `divio doctor` checks Docker.',
              failure,
            ),
            { portTaken: taken },
          );
        },
      );
      break;
    } catch (error) {
      if (!(error as { portTaken?: boolean }).portTaken || attempt >= 3) throw error;
      // Another program took the port between our check and Docker's bind: choose again.
      port = await findFreePort({ avoid: [port] });
      io.info(`Port taken; trying ${port}.`);
    }
  }
  await writeLocalState(project.root, { ...(await readLocalState(project.root)), webPort: port });

  const release = project.manifest.release?.command;
  if (release && options.release !== false) {
    const web = await local.requireRunning('web');
    await runShown(
      io,
      'Running the release command',
      execa('docker', ['exec', web.id, 'sh', '-c', release], { buffer: false, stdin: 'ignore' }),
      (failure) =>
        childFailed(`the release command \`${release}\` failed`, 'Fix it (see its output above) and run `divio project up` again.', failure),
    );
  }

  const health = await io.task('Waiting for the health check', () =>
    waitForHealth(local, port, options.timeoutMs ?? 180_000),
  );
  const url = webUrl(project, port);
  return { app: project.slug, url, port, liveConfig, composeFile: composeFile.status, health };
}

async function chooseWebPort(local: LocalEnvironment, containerPort: number): Promise<number> {
  const running = await runningServiceContainer(local.name, 'web');
  const current = publishedWebPort(running, containerPort);
  if (current) return current;
  const stored = (await readLocalState(local.project.root)).webPort;
  if (stored && (await isPortFree(stored))) return stored;
  return findFreePort({ preferred: stored });
}

async function waitForHealth(local: LocalEnvironment, port: number, timeoutMs: number): Promise<unknown> {
  const { project } = local;
  const path = project.manifest.web.health_check;
  const host = `${localDomain(project)}:${port}`;
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const result = await probeHttp(port, path, host, 5000);
      if (result.status >= 200 && result.status < 300) {
        try {
          return JSON.parse(result.body) as unknown;
        } catch {
          return result.body;
        }
      }
      last = `HTTP ${result.status}: ${result.body.slice(0, 200)}`;
    } catch (error) {
      last = (error as Error).message;
    }
    const web = await runningServiceContainer(local.name, 'web');
    if (!web) {
      const logs = await recentLogs(local, 'web');
      throw new DivioError(`the web service of ${project.slug} stopped while starting`, {
        exitCode: ExitCode.childFailed,
        hint: `Its last log lines:\n${logs}\nFix the error and run \`divio project up\` again.`,
      });
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new DivioError(`the health check ${path} did not answer 2xx within ${Math.round(timeoutMs / 1000)}s (last: ${last})`, {
    exitCode: ExitCode.childFailed,
    hint: 'See `divio project logs web`; the app must answer on 0.0.0.0:$PORT.',
  });
}

async function recentLogs(local: LocalEnvironment, service: string): Promise<string> {
  const all = await local.containers();
  const container = all.find((c) => c.service === service);
  if (!container) return '  (no container)';
  const buffer = (await docker().getContainer(container.id).logs({ stdout: true, stderr: true, tail: 30 })) as unknown as Buffer;
  return demuxToText(buffer)
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => `  ${l}`)
    .join('\n');
}

