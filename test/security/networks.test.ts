/**
 * Network boundaries on the shared test platform (issue 12, §4), probed from inside an app's own
 * running container as its code would: it reaches its own database and bucket (through the data
 * gateway), and other apps only through the router like any client; it cannot reach the registry,
 * the API, the cluster's admin connection or another app's task, by name or by address. Each
 * refusal is checked along with the victim still answering as before.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { createUser, viaRouter } from '../helpers/api.js';
import { divio } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

/**
 * Run in the app's container by node: for each [host, port, payload?] say how a TCP connection
 * went — `open` (with the first bytes answered, hex), `refused`, `unreachable`, `timeout`,
 * `unresolved` — with a short deadline, since a blackholed address never answers.
 */
const PROBE = `
const net = require('net');
const targets = JSON.parse(process.argv[1]);
const probe = ([host, port, payload]) => new Promise((resolve) => {
  const socket = net.connect({ host, port });
  const done = (result) => { socket.destroy(); resolve(result); };
  const timer = setTimeout(() => done('timeout'), 3000);
  socket.on('connect', () => {
    if (!payload) { clearTimeout(timer); return done('open'); }
    socket.write(Buffer.from(payload, 'hex'));
    // The answer until the peer closes, or a second after its first bytes (PostgreSQL waits for a password).
    let answer = Buffer.alloc(0);
    const finish = () => { clearTimeout(timer); done('open ' + answer.toString('hex')); };
    socket.on('data', (data) => {
      if (answer.length === 0) setTimeout(finish, 1000);
      answer = Buffer.concat([answer, data]).subarray(0, 65536);
    });
    socket.on('end', finish);
  });
  socket.on('error', (e) => {
    clearTimeout(timer);
    done(e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN' ? 'unresolved' : e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ETIMEDOUT' ? 'timeout' : 'unreachable');
  });
});
Promise.all(targets.map(probe)).then((r) => console.log(JSON.stringify(r)));
`;

/** A PostgreSQL 3.0 startup message for USER and DATABASE, as hex. */
function startupMessage(user: string, database: string): string {
  const body = Buffer.concat([Buffer.from([0, 3, 0, 0]), Buffer.from(`user\0${user}\0database\0${database}\0\0`)]);
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([length, body]).toString('hex');
}

function httpGet(host: string, path = '/healthz'): string {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`).toString('hex');
}

describeWithDocker('networks: what an app container can reach', () => {
  const platform = usePlatform();
  let parent = '';
  const victim = { slug: `netv-${Math.random().toString(36).slice(2, 8)}`, dir: '', env: {} as Record<string, string> };
  const attacker = { slug: `neta-${Math.random().toString(36).slice(2, 8)}`, dir: '', env: {} as Record<string, string> };
  let attackerContainer = '';

  const service = (slug: string) => `${platform().name}-app-${slug}-test`;

  /** The running container of a service's task, found through Swarm's task list. */
  async function taskContainer(name: string): Promise<{ id: string; addresses: string[] }> {
    const tasks = (await docker().listTasks({ filters: { service: [name], 'desired-state': ['running'] } })) as Array<{
      Status?: { State?: string; ContainerStatus?: { ContainerID?: string } };
      NetworksAttachments?: Array<{ Addresses?: string[] }>;
    }>;
    const running = tasks.find((t) => t.Status?.State === 'running' && t.Status.ContainerStatus?.ContainerID);
    if (!running) throw new Error(`${name} has no running task`);
    const addresses = (running.NetworksAttachments ?? []).flatMap((a) => a.Addresses ?? []).map((a) => a.split('/')[0]!);
    return { id: running.Status!.ContainerStatus!.ContainerID!, addresses };
  }

  async function probeFrom(container: string, targets: Array<[string, number, string?]>): Promise<string[]> {
    const result = await execa('docker', ['exec', container, 'node', '-e', PROBE, JSON.stringify(targets)], { reject: false, timeout: 60_000 });
    expect(result.exitCode, result.stderr).toBe(0);
    return JSON.parse(result.stdout.trim()) as string[];
  }

  async function victimAnswers(): Promise<void> {
    expect((await viaRouter(platform().port, `test-${victim.slug}.localhost`, '/healthz')).status).toBe(200);
  }

  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), 'divio-network-security-'));
    for (const who of [victim, attacker]) {
      const user = await createUser(platform().endpoint, await operatorToken(), who === victim ? 'victim' : 'attacker');
      who.env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
      who.dir = join(parent, who.slug);
      const created = await divio(['project', 'create', who.slug], { cwd: parent, env: who.env });
      expect(created.exitCode, created.stderr).toBe(0);
      const deployed = await divio(['project', 'deploy', 'test'], { cwd: who.dir, env: who.env, timeout: 900_000 });
      expect(deployed.exitCode, deployed.stderr).toBe(0);
    }
    attackerContainer = (await taskContainer(service(attacker.slug))).id;
  }, 1_200_000);

  afterAll(async () => {
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it("runs each environment on a network of its own that only the router and the gateway share", async () => {
    const networksOf = async (name: string) => {
      const inspected = await docker().getService(name).inspect();
      return ((inspected.Spec?.TaskTemplate as { Networks?: Array<{ Target: string }> }).Networks ?? []).map((n) => n.Target);
    };
    const [victimNetworks, attackerNetworks] = [await networksOf(service(victim.slug)), await networksOf(service(attacker.slug))];
    expect(victimNetworks).toHaveLength(1);
    expect(attackerNetworks).toHaveLength(1);
    expect(victimNetworks[0]).not.toBe(attackerNetworks[0]);
    const platformNetwork = (await docker().getNetwork(`${platform().name}-net`).inspect()) as { Id: string };
    expect(attackerNetworks).not.toContain(platformNetwork.Id);
    const network = (await docker().getNetwork(attackerNetworks[0]!).inspect()) as { Attachable: boolean; Labels: Record<string, string> };
    expect(network.Attachable).toBe(false);
    expect(network.Labels).toMatchObject({ 'divio.app': attacker.slug, 'divio.env': 'test' });
    for (const shared of ['router', 'gateway']) expect(await networksOf(`${platform().name}-${shared}`)).toEqual(expect.arrayContaining(attackerNetworks));
    for (const inner of ['api', 'registry', 'postgres', 's3']) expect(await networksOf(`${platform().name}-${inner}`)).not.toContain(attackerNetworks[0]);
  });

  /**
   * What only the real service answers. This machine's outside network accepts any TCP connection
   * (a proxy answers for every address), so "the connection opened" proves nothing: a probe counts
   * as reaching its target only when the target's own answer comes back. Each signature is checked
   * against the same target from the gateway, which is on every network, so none can be vacuous.
   */
  const SIGNATURES: Record<string, { payload: string; answer: RegExp }> = {
    registry: { payload: httpGet('registry', '/v2/'), answer: /docker-distribution-api-version/i },
    api: { payload: httpGet('api', '/v1/openapi.json'), answer: /"openapi"/ },
    postgres: { payload: startupMessage('postgres', 'postgres'), answer: /^[RE]/ },
    s3: { payload: httpGet('s3', '/'), answer: /<\?xml|<Error>/ },
    app: { payload: httpGet(`test-${victim.slug}.localhost`, '/healthz'), answer: /^HTTP\/1\.[01] 200/ },
  };

  /** The text of a probe's answer, '' when nothing answered. */
  const answerOf = (result: string): string => (result.startsWith('open ') ? Buffer.from(result.slice(5), 'hex').toString('latin1') : '');

  /** Probe TARGETS (kind, host, port) from the attacker and from the gateway; the gateway must get each service's own answer. */
  async function reachability(targets: Array<[keyof typeof SIGNATURES, string, number]>): Promise<string[]> {
    const probes = targets.map(([kind, host, port]): [string, number, string] => [host, port, SIGNATURES[kind]!.payload]);
    const gateway = await taskContainer(`${platform().name}-gateway`);
    const [fromAttacker, fromGateway] = [await probeFrom(attackerContainer, probes), await probeFrom(gateway.id, probes)];
    const reached: string[] = [];
    targets.forEach(([kind, host, port], i) => {
      const isTarget = (result: string) => SIGNATURES[kind]!.answer.test(answerOf(result));
      // By address the gateway is the control; by name only the attacker's network is asked.
      if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) expect(isTarget(fromGateway[i]!), `control: ${kind} at ${host}:${port} from the gateway: ${fromGateway[i]}`).toBe(true);
      if (isTarget(fromAttacker[i]!)) reached.push(`${kind} at ${host}:${port}`);
    });
    return reached;
  }

  it("cannot reach the registry, the API, the cluster or the media store's own port, by name or by address", async () => {
    const name = platform().name;
    const inner = { registry: 5000, api: 8080, postgres: 5432, s3: 4568 } as const;
    const targets: Array<[keyof typeof SIGNATURES, string, number]> = [];
    const byName: Array<[string, number]> = [];
    for (const [component, port] of Object.entries(inner) as Array<[keyof typeof inner, number]>) {
      byName.push([`${name}-${component}`, port], [component, port]);
      const { addresses } = await taskContainer(`${name}-${component}`);
      expect(addresses.length).toBeGreaterThan(0);
      for (const address of addresses) targets.push([component, address, port]);
    }
    // Their names mean nothing on the app's network.
    const named = await probeFrom(attackerContainer, byName);
    byName.forEach((target, i) => expect(`${target.join(':')} ${named[i]}`).toMatch(/ unresolved$/));
    expect(await reachability(targets)).toEqual([]);
    await victimAnswers();
  });

  it("cannot reach another app's task directly, only through the router like any client", async () => {
    const victimTask = await taskContainer(service(victim.slug));
    const byName: Array<[string, number]> = [
      [service(victim.slug), 8000],
      [`tasks.${service(victim.slug)}`, 8000],
    ];
    const named = await probeFrom(attackerContainer, byName);
    byName.forEach((target, i) => expect(`${target.join(':')} ${named[i]}`).toMatch(/ unresolved$/));
    expect(victimTask.addresses.length).toBeGreaterThan(0);
    expect(await reachability(victimTask.addresses.map((address): ['app', string, number] => ['app', address, 8000]))).toEqual([]);
    const [viaRouter] = await probeFrom(attackerContainer, [[`${platform().name}-router`, 80, SIGNATURES.app!.payload]]);
    expect(answerOf(viaRouter!)).toMatch(/^HTTP\/1\.1 200/);
    await victimAnswers();
  });

  it("reaches its own database through the gateway, but the gateway refuses the cluster's admin and other roles", async () => {
    const gateway = `${platform().name}-database`;
    const ownRole = `${attacker.slug.replace(/-/g, '_')}_test`;
    const results = await probeFrom(attackerContainer, [
      [gateway, 5432, startupMessage(ownRole, ownRole)],
      [gateway, 5432, startupMessage('postgres', 'postgres')],
      [gateway, 5432, startupMessage('divio_platform', 'divio_platform')],
      [gateway, 5432, startupMessage(`${victim.slug.replace(/-/g, '_')}_test`, 'postgres')],
    ]);
    // The cluster asks the own role for its password ('R', authentication request).
    expect(results[0]).toMatch(/^open 52/);
    for (const refused of results.slice(1, 3)) {
      expect(refused).toMatch(/^open 45/);
      expect(Buffer.from(refused.replace(/^open /, ''), 'hex').toString('utf8')).toContain("may not connect through the platform's gateway");
    }
    // Another environment's role gets through the gateway to the cluster, which wants its password
    // (and would then refuse the database: environment roles connect to their own only).
    expect(results[3]).toMatch(/^open 52/);
  });

  it('reaches the media store through the gateway, where keys are checked as from anywhere', async () => {
    const results = await probeFrom(attackerContainer, [[`${platform().name}-media`, 4568, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n').toString('hex')]]);
    const answer = Buffer.from(results[0]!.replace(/^open /, ''), 'hex').toString('utf8');
    // Anonymous: refused by the store itself, which is what matters here — it was reached.
    expect(answer).toMatch(/^HTTP\/1\.1 403/);
  });
});
