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
 * zlib level of a dump's data blocks. Level 1 even on this machine: every byte of a dump crosses
 * several hops (docker exec, the CLI, the router, the API, pg_restore), and on two cores moving a
 * 4x larger stream costs more than zlib's fastest level (measured in bench/db-transfer.js).
 * DIVIO_DUMP_COMPRESSION (0-9) overrides it, e.g. 0 for a fast machine with spare cores.
 */
export function dumpCompression(env: NodeJS.ProcessEnv = process.env): number {
  const chosen = env.DIVIO_DUMP_COMPRESSION;
  return chosen !== undefined && /^[0-9]$/.test(chosen) ? Number(chosen) : 1;
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
