/**
 * The Docker engine, through dockerode (API calls) and the docker CLI (only where a process with
 * streamed stdin/stdout is the point: `docker exec -i`).
 */
import Docker from 'dockerode';
import { DivioError, ExitCode } from './errors.js';

let client: Docker | undefined;

export function docker(): Docker {
  client ??= new Docker();
  return client;
}

export function describeDockerHost(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
}

/** Fails with a clear message when no engine answers. */
export async function requireDocker(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  try {
    await docker().ping();
  } catch (error) {
    throw new DivioError(`the Docker engine is not answering at ${describeDockerHost(env)}`, {
      exitCode: ExitCode.environment,
      hint: 'Start Docker (e.g. `sudo systemctl start docker`, or Docker Desktop), then run `divio doctor`.',
      cause: error,
    });
  }
}

export async function dockerAnswers(): Promise<boolean> {
  try {
    await docker().ping();
    return true;
  } catch {
    return false;
  }
}

export interface ServiceContainer {
  id: string;
  name: string;
  service: string;
  state: string;
  /** "healthy" | "unhealthy" | "starting" | null when the container has no health check. */
  health: string | null;
  ports: { host: string; hostPort: number; containerPort: number }[];
}

/** Containers of a compose project, found by the labels both Compose v1 and v2 set. */
export async function composeContainers(project: string, service?: string): Promise<ServiceContainer[]> {
  const labels = [`com.docker.compose.project=${project}`];
  if (service) labels.push(`com.docker.compose.service=${service}`);
  const list = await docker().listContainers({ all: true, filters: { label: labels } });
  return list
    .filter((c) => c.Labels['com.docker.compose.oneoff'] !== 'True')
    .map((c) => ({
      id: c.Id,
      name: (c.Names[0] ?? c.Id).replace(/^\//, ''),
      service: c.Labels['com.docker.compose.service'] ?? '',
      state: c.State,
      health: /\((healthy|unhealthy|health: starting)\)/.exec(c.Status)?.[1]?.replace('health: ', '') ?? null,
      ports: c.Ports.filter((p) => p.PublicPort).map((p) => ({
        host: p.IP ?? '0.0.0.0',
        hostPort: p.PublicPort,
        containerPort: p.PrivatePort,
      })),
    }))
    .sort((a, b) => a.service.localeCompare(b.service));
}

export async function runningServiceContainer(project: string, service: string): Promise<ServiceContainer | undefined> {
  return (await composeContainers(project, service)).find((c) => c.state === 'running');
}

export interface DockerFrame {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

/**
 * Docker's multiplexed output of a container without a TTY (logs, exec): 8-byte frame headers
 * (stream type, three zero bytes, big-endian length). Bytes that are not framed — a TTY's output,
 * or what follows the last whole frame — count as stdout.
 */
export function demuxFrames(buffer: Buffer): DockerFrame[] {
  const frames: DockerFrame[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length && buffer[offset]! <= 2 && buffer[offset + 1] === 0) {
    const size = buffer.readUInt32BE(offset + 4);
    frames.push({ stream: buffer[offset] === 2 ? 'stderr' : 'stdout', data: buffer.subarray(offset + 8, offset + 8 + size) });
    offset += 8 + size;
  }
  if (offset < buffer.length) frames.push({ stream: 'stdout', data: buffer.subarray(offset) });
  return frames;
}

/** Both streams of multiplexed output, in order, as one buffer. */
export function demuxToBuffer(buffer: Buffer): Buffer {
  return Buffer.concat(demuxFrames(buffer).map((f) => f.data));
}

export function demuxToText(buffer: Buffer): string {
  return demuxToBuffer(buffer).toString('utf8');
}
