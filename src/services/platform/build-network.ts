/**
 * The bridge network app builds run on (`NAME-build`, Linux bridge dvb-…), and its firewall. The
 * classic builder runs RUN steps on the default bridge unless told otherwise, and from there the
 * host's ports answer through the bridge's gateway (the router's public port, so the registry and
 * the API's internal routes, and anything else bound on the host). A network of the platform's own
 * gives the firewall an interface to name; see src/platform/build-firewall.ts for the rules.
 */
import { demuxToBuffer, docker } from '../../core/docker.js';
import { DivioError, ExitCode } from '../../core/errors.js';
import { buildBridgeName, buildNetworkName } from './config.js';
import { LABEL_PLATFORM } from './specs.js';

const LABEL_ROLE = 'divio.role';

export async function ensureBuildNetwork(platform: string): Promise<void> {
  const name = buildNetworkName(platform);
  const existing = (await docker().listNetworks({ filters: { name: [name] } })).find((n) => n.Name === name);
  const bridge = buildBridgeName(platform);
  if (existing) {
    if (existing.Driver !== 'bridge' || existing.Options?.['com.docker.network.bridge.name'] !== bridge) {
      throw new DivioError(`a Docker network named ${name} exists and is not this platform's build network`, {
        exitCode: ExitCode.environment,
        hint: `Remove it (\`docker network rm ${name}\`) or start the platform under another --name.`,
      });
    }
    return;
  }
  await docker().createNetwork({
    Name: name,
    Driver: 'bridge',
    CheckDuplicate: true,
    Options: { 'com.docker.network.bridge.name': bridge },
    Labels: { [LABEL_PLATFORM]: platform, [LABEL_ROLE]: 'build' },
  });
}

/** Runs the firewall script in a one-off container of the platform image on the host's network. */
async function runFirewall(platform: string, image: string, action: 'apply' | 'remove'): Promise<{ ok: boolean; output: string }> {
  const container = await docker().createContainer({
    Image: image,
    WorkingDir: '/opt/divio',
    Cmd: ['node', 'dist/platform/build-firewall.js', action, buildBridgeName(platform)],
    Labels: { [LABEL_PLATFORM]: platform, [LABEL_ROLE]: 'build-firewall' },
    HostConfig: { NetworkMode: 'host', CapAdd: ['NET_ADMIN', 'NET_RAW'] },
  });
  try {
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    return { ok: StatusCode === 0, output: demuxToBuffer(logs).toString('utf8').trim() };
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}

export async function applyBuildFirewall(platform: string, image: string): Promise<void> {
  const { ok, output } = await runFirewall(platform, image, 'apply');
  if (ok) return;
  throw new DivioError(`could not set up the firewall of the build network ${buildNetworkName(platform)}: ${output || 'no output'}`, {
    exitCode: ExitCode.environment,
    hint: 'The engine must allow a container with NET_ADMIN on the host network (a rootful engine does); builds would otherwise reach ports on this host.',
  });
}

/** Best effort, for removing a platform: the rules, then the network. */
export async function removeBuildNetwork(platform: string, image: string | undefined): Promise<void> {
  if (image) await runFirewall(platform, image, 'remove').catch(() => undefined);
  const name = buildNetworkName(platform);
  const network = (await docker().listNetworks({ filters: { name: [name] } })).find((n) => n.Name === name);
  if (network) await docker().getNetwork(network.Id).remove().catch(() => undefined);
}
