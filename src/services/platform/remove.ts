/**
 * Remove a platform from this engine: its services (apps included), secrets and network, and
 * optionally its data directory. Used by tests' teardown; the swarm itself stays.
 */
import { rm } from 'node:fs/promises';
import { docker } from '../../core/docker.js';
import { networkName } from './config.js';
import { removeBuildNetwork } from './build-network.js';
import { ensureSwarm, environmentNetworks, listPlatformSecrets, platformServices } from './swarm.js';

export interface RemoveOptions {
  dataDir?: string;
  /** Keep the data directory (default: keep it; pass false to delete it). */
  keepData?: boolean;
  timeoutMs?: number;
}

export async function removePlatform(name: string, options: RemoveOptions = {}): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  const swarm = await ensureSwarm({ init: false }).catch(() => 'none' as const);
  if (swarm !== 'none') {
    const services = await platformServices(name);
    // The API's image holds the build network's firewall script, run again to remove its rules.
    const platformImage = services.find((s) => s.Spec?.Labels?.['divio.component'] === 'api')?.Spec?.TaskTemplate as { ContainerSpec?: { Image?: string } } | undefined;
    for (const service of services) {
      await docker()
        .getService(service.ID)
        .remove()
        .catch(() => {});
    }
    // Containers of removed services go away asynchronously; the network and secrets wait for them.
    const ids = services.map((s) => s.ID);
    while (ids.length > 0 && Date.now() < deadline && (await anyContainerOf(ids))) {
      await new Promise((r) => setTimeout(r, 500));
    }
    for (const secret of await listPlatformSecrets(name)) {
      await retry(deadline, () => docker().getSecret(secret.id).remove());
    }
    for (const network of await environmentNetworks(name)) await removeNetwork(network.Name, deadline);
    await removeNetwork(networkName(name), deadline);
    await removeBuildNetwork(name, platformImage?.ContainerSpec?.Image);
  }
  if (options.dataDir && options.keepData === false) {
    // Files under it belong to container users (root, postgres): removing them needs the rights we run with.
    await rm(options.dataDir, { recursive: true, force: true, maxRetries: 3 });
  }
}

async function anyContainerOf(serviceIds: string[]): Promise<boolean> {
  for (const id of serviceIds) {
    const list = await docker().listContainers({ all: true, filters: { label: [`com.docker.swarm.service.id=${id}`] } });
    if (list.length > 0) return true;
  }
  return false;
}

async function removeNetwork(name: string, deadline: number): Promise<void> {
  const networks = await docker().listNetworks({ filters: { name: [name] } });
  const network = networks.find((n) => n.Name === name);
  if (!network) return;
  const handle = docker().getNetwork(network.Id);
  // Containers attached by hand (tests, tools) keep a network alive: disconnect them first.
  try {
    const info = (await handle.inspect()) as { Containers?: Record<string, unknown> };
    for (const id of Object.keys(info.Containers ?? {})) {
      await handle.disconnect({ Container: id, Force: true }).catch(() => {});
    }
  } catch {
    // gone meanwhile
  }
  await retry(deadline, async () => {
    try {
      await handle.remove();
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return;
      throw error;
    }
  });
}

async function retry(deadline: number, work: () => Promise<unknown>): Promise<void> {
  for (;;) {
    try {
      await work();
      return;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return;
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
