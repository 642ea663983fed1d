/** The platform side of a transfer: which app and environment, through which client. */
import { runningServiceContainer } from '../../../core/docker.js';
import { childFailed, runShown } from '../../../core/child-output.js';
import type { ApiClient } from '../../../core/api-client.js';
import type { IO } from '../../../core/io.js';
import type { EnvironmentName } from '../../../shared/api/schemas.js';
import { syncComposeFile } from '../compose-file.js';
import type { LocalEnvironment } from '../local-environment.js';

export interface RemoteEnvironment {
  client: ApiClient;
  slug: string;
  environment: EnvironmentName;
}

/**
 * Whether the platform is on this machine: there the link is memory-fast and compressing a dump
 * only costs time; over a network zlib's fastest level pays for itself.
 */
export function isLocalEndpoint(endpoint: string): boolean {
  let host: string;
  try {
    host = new URL(endpoint).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return false;
  }
  return host === 'localhost' || host.endsWith('.localhost') || host === '::1' || /^127\./.test(host);
}

export function dumpCompressionFor(endpoint: string): number {
  return isLocalEndpoint(endpoint) ? 0 : 1;
}

/** The local database container, started (alone) when it is not running yet. */
export async function ensureLocalDatabase(local: LocalEnvironment, io: IO): Promise<void> {
  if (!local.project.manifest.database) return;
  if (await runningServiceContainer(local.name, 'db')) return;
  await syncComposeFile(local.project);
  const compose = await local.compose();
  await runShown(io, 'Starting the local database', compose.run(['up', '--detach', 'db'], { buffer: false, stdin: 'ignore' }), (failure) =>
    childFailed(`${compose.tool.argv.join(' ')} up db failed`, "Read the output above; `divio doctor` checks Docker.", failure),
  );
}
