/**
 * Each app environment runs on an overlay network of its own: its tasks and release jobs, the
 * router (which serves it) and the data gateway (its one way to the database cluster and the media
 * store) are on it, nothing else. So an app cannot reach another app's tasks, the registry, the
 * API or the cluster's admin connection: those are on the platform's network, which apps never join.
 *
 * Swarm restarts a task whose networks change, so the shared services join a network once, on the
 * environment's first deploy, and leave it when the app is deleted.
 */
import type Docker from 'dockerode';
import { LABEL_COMPONENT, LABEL_PLATFORM } from '../../../services/platform/specs.js';
import type { EnvironmentName } from '../../../shared/api/schemas.js';
import { LABEL_APP_ID } from './dockerfile-references.js';
import { environmentNetworkName, LABEL_APP, LABEL_ENV } from './runtime.js';

export const COMPONENT_NETWORK = 'network';
const POLL_MS = 500;

/** A platform service that joins every environment network, under these names on it. */
export interface SharedService {
  service: string;
  aliases: string[];
}

export interface NetworkRef {
  id: string;
  name: string;
}

export function environmentNetworkLabels(platform: string, slug: string, env: EnvironmentName, appId: string): Record<string, string> {
  return { [LABEL_PLATFORM]: platform, [LABEL_APP]: slug, [LABEL_APP_ID]: appId, [LABEL_ENV]: env, [LABEL_COMPONENT]: COMPONENT_NETWORK };
}

/** A network of a deleted app of the same slug, not yet removed: the new app must not join it. */
export class NetworkStillInUse extends Error {}

/** The environment's network, created when missing. */
export async function ensureEnvironmentNetwork(docker: Docker, platform: string, slug: string, env: EnvironmentName, appId: string): Promise<NetworkRef> {
  const name = environmentNetworkName(platform, slug, env);
  const existing = await findNetwork(docker, name);
  if (existing) {
    const labels = existing.Labels ?? {};
    // A network of that name that the platform did not make for this environment is not joined.
    if (existing.Driver !== 'overlay' || labels[LABEL_PLATFORM] !== platform || labels[LABEL_APP] !== slug || labels[LABEL_ENV] !== env) {
      throw new Error(`a Docker network named ${name} exists and is not this environment's`);
    }
    if (labels[LABEL_APP_ID] !== appId) {
      throw new NetworkStillInUse(`the network of a deleted app named ${slug} is still being removed; deploy again in a minute`);
    }
    return { id: existing.Id, name };
  }
  try {
    const created = await docker.createNetwork({
      Name: name,
      Driver: 'overlay',
      // Not attachable: only Swarm services the platform creates join it, no `docker run --network`.
      Attachable: false,
      CheckDuplicate: true,
      Labels: environmentNetworkLabels(platform, slug, env, appId),
    });
    return { id: created.id, name };
  } catch (error) {
    // Another deployment of this environment's twin made it at the same moment.
    const raced = await findNetwork(docker, name);
    if (raced) return { id: raced.Id, name };
    throw error;
  }
}

async function findNetwork(docker: Docker, name: string): Promise<Docker.NetworkInspectInfo | undefined> {
  const list = await docker.listNetworks({ filters: { name: [name] } });
  return list.find((n) => n.Name === name);
}

/**
 * Have each shared service on the network (a Swarm update, so a restart of its task, when it was
 * not on it yet) and wait until a task of it runs attached to the network. Serialised: two
 * deployments updating the router at once would otherwise overwrite each other's networks.
 */
export class NetworkMembership {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly docker: Docker,
    private readonly shared: SharedService[],
    private readonly timeoutMs = 120_000,
  ) {}

  join(network: NetworkRef, log: (line: string) => void = () => {}): Promise<void> {
    return this.serialised(async () => {
      for (const shared of this.shared) {
        const changed = await this.change(shared, (networks) =>
          networks.some((n) => n.Target === network.id || n.Target === network.name) ? undefined : [...networks, { Target: network.id, Aliases: [...shared.aliases] }],
        );
        if (changed) log(`${shared.service} joins the network ${network.name}`);
        await this.waitAttached(shared.service, network.id, true);
      }
    });
  }

  /** Take the shared services off the networks, in one update each (absent network or service: nothing to do). */
  leave(leaving: NetworkRef[]): Promise<void> {
    const gone = (n: Docker.NetworkAttachmentConfig) => leaving.some((network) => n.Target === network.id || n.Target === network.name);
    return this.serialised(async () => {
      for (const shared of this.shared) {
        await this.change(shared, (networks) => {
          const kept = networks.filter((n) => !gone(n));
          return kept.length === networks.length ? undefined : kept;
        });
        for (const network of leaving) await this.waitAttached(shared.service, network.id, false);
      }
    });
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Apply `edit` to the service's networks; false when it changed nothing. Retried on a stale version. */
  private async change(shared: SharedService, edit: (networks: Docker.NetworkAttachmentConfig[]) => Docker.NetworkAttachmentConfig[] | undefined): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      const service = await findService(this.docker, shared.service);
      if (!service) throw new Error(`the platform service ${shared.service} is not running`);
      const spec = structuredClone(service.Spec ?? {}) as Docker.ServiceSpec;
      const template = (spec.TaskTemplate ?? {}) as Docker.ContainerTaskSpec;
      const networks = edit(template.Networks ?? []);
      if (!networks) return false;
      template.Networks = networks;
      spec.TaskTemplate = template;
      try {
        await this.docker.getService(service.ID).update({ _query: { version: service.Version?.Index }, _body: spec } as never);
        return true;
      } catch (error) {
        if (attempt >= 5 || !/out of sequence/i.test((error as Error).message ?? '')) throw error;
      }
    }
  }

  /** Until a running task is (or, leaving, no running task is) attached to the network. */
  private async waitAttached(serviceName: string, networkId: string, attached: boolean): Promise<void> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const service = await findService(this.docker, serviceName);
      if (!service) return;
      const tasks = (await this.docker.listTasks({ filters: { service: [service.ID], 'desired-state': ['running'] } })) as Array<{
        Status?: { State?: string };
        NetworksAttachments?: Array<{ Network?: { ID?: string } }>;
      }>;
      const running = tasks.filter((t) => t.Status?.State === 'running');
      const on = (t: (typeof running)[number]) => (t.NetworksAttachments ?? []).some((a) => a.Network?.ID === networkId);
      if (attached ? running.some(on) : running.length > 0 && !running.some(on)) return;
      if (Date.now() >= deadline) {
        throw new Error(`${serviceName} did not ${attached ? 'join' : 'leave'} the network within ${Math.round(this.timeoutMs / 1000)} s`);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

async function findService(docker: Docker, name: string): Promise<Docker.Service | undefined> {
  const list = await docker.listServices({ filters: { name: [name] } });
  return list.find((s) => s.Spec?.Name === name);
}

/** Remove an environment's network once nothing is attached (services just removed may linger). */
export async function removeEnvironmentNetwork(docker: Docker, network: NetworkRef, timeoutMs = 60_000): Promise<'removed' | 'absent'> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await docker.getNetwork(network.id).remove();
      return 'removed';
    } catch (error) {
      const status = (error as { statusCode?: number }).statusCode;
      if (status === 404) return 'absent';
      if (Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}
