#!/usr/bin/env node
// Goal: `divio project deploy test` of the express boilerplate at most 1.3x the raw tools doing the
// same in the same run: `git archive COMMIT | docker build -` + `docker push` to the platform's
// registry + `docker service update --image IMAGE --detach=false` of the same Swarm service.
//   (a) a redeploy that changes nothing (deploy test twice; the second is timed),
//   (b) a one-line change: edit a file and commit (untimed), then `git push` + `divio project deploy
//       test` (timed), against build + push + service update of another such commit (timed).
// The bench starts a platform of its own (`divio platform start --name divio-bench`, its own data
// and config dirs, a free port) and removes it at the end. Usage: node bench/deploy.js [rounds]
// (needs Docker and `npm run build`). Prints each timing, the medians, the ratios and where divio's
// time goes (from when each log line reaches the CLI's output); exits 1 if a goal is missed.
import { execa } from 'execa';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '../dist/core/ports.js';
import { removePlatform } from '../dist/services/platform/remove.js';

const repo = join(fileURLToPath(import.meta.url), '..', '..');
const bin = join(repo, 'bin', 'run.js');
const rounds = Number(process.argv[2] ?? 3);
const name = 'divio-bench';
const slug = 'benchapp';
const goal = 1.3;

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (s) => `${s.toFixed(2)} s`;

let work;
let dataDir;
let env;
let app;
let registry;
let service;

const divio = (args, options = {}) => execa('node', [bin, ...args], { cwd: app ?? work, env, ...options });
const git = (args) => execa('git', args, { cwd: app, env });

/** `divio project deploy test`, with when each phase's first log line reached the CLI's output. */
async function divioDeploy() {
  const started = now();
  const child = divio(['project', 'deploy', 'test'], { all: false });
  const marks = [];
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => marks.push([now() - started, line]));
  await child;
  const seconds = now() - started;
  const at = (pattern) => marks.find(([, line]) => pattern.test(line))?.[0];
  const phases = {
    'request + resolve commit': at(/^Commit /),
    'build + push (or reuse)': at(/^Release command|^No release command/),
    'release job': at(/^Rolling out /),
    'rollout': at(/^Routing /),
    'route + end': seconds,
  };
  return { seconds, phases };
}

/** What the raw tools do for one commit: build its archive, push the image, update the service. */
async function rawDeploy(commit) {
  const image = `${registry}/${slug}:${commit}`;
  const before = await imageId(image);
  const t0 = now();
  await execa('git', ['archive', '--format=tar', commit], { cwd: app }).pipe(
    'docker',
    ['build', '-q', '-t', image, '--label', `divio.app=${slug}`, '--label', `divio.commit=${commit}`, '-'],
    // The classic builder, as the platform's builder uses through the engine's API.
    { env: { DOCKER_BUILDKIT: '0' } },
  );
  const t1 = now();
  await execa('docker', ['push', image]);
  const t2 = now();
  await execa('docker', ['service', 'update', '--image', image, '--no-resolve-image', '--detach=false', service]);
  const t3 = now();
  if (before && before !== (await imageId(image))) console.log(`  note: the raw build of ${commit.slice(0, 12)} made another image than the platform's builder`);
  return { seconds: t3 - t0, phases: { 'docker build': t1 - t0, 'docker push': t2 - t1, 'docker service update': t3 - t2 } };
}

async function imageId(image) {
  const inspected = await execa('docker', ['image', 'inspect', '--format', '{{.Id}}', image], { reject: false });
  return inspected.exitCode === 0 ? String(inspected.stdout).trim() : null;
}

async function head() {
  return (await git(['rev-parse', 'HEAD'])).stdout.trim();
}

async function commitChange(round, who) {
  await writeFile(join(app, 'VERSION'), `${who} round ${round} ${Date.now()}\n`);
  await git(['add', 'VERSION']);
  await git(['-c', 'user.name=bench', '-c', 'user.email=bench@localhost', 'commit', '-qm', `bench: ${who} round ${round}`]);
  return head();
}

function phaseMedians(runs) {
  const names = Object.keys(runs[0].phases);
  return Object.fromEntries(names.map((n) => [n, median(runs.map((r) => r.phases[n] ?? NaN))]));
}

/** divio's phases are points in time (when a phase's first line arrived): print them as durations. */
function printDivioPhases(label, runs) {
  const points = phaseMedians(runs);
  let previous = 0;
  const parts = Object.entries(points).map(([phase, at]) => {
    const part = `${phase} ${(at - previous).toFixed(2)}`;
    previous = at;
    return part;
  });
  console.log(`  ${label} divio phases (s, medians): ${parts.join(', ')}`);
}

function printRawPhases(label, runs) {
  const parts = Object.entries(phaseMedians(runs)).map(([phase, s]) => `${phase} ${s.toFixed(2)}`);
  console.log(`  ${label} raw phases (s, medians): ${parts.join(', ')}`);
}

async function main() {
  work = await mkdtemp(join(tmpdir(), 'divio-bench-deploy-'));
  dataDir = join(work, 'data');
  const configDir = join(work, 'config');
  await mkdir(configDir);
  env = { ...process.env, DIVIO_CONFIG_DIR: configDir, NO_COLOR: '1', CI: 'true' };
  delete env.DIVIO_TOKEN;
  delete env.DIVIO_ENDPOINT;
  // A bench run that died earlier leaves its platform behind: this one is ours by name.
  await removePlatform(name).catch(() => {});

  const port = await findFreePort({ range: [18800, 18899], host: '0.0.0.0' });
  console.log(`starting the platform ${name} on port ${port}...`);
  await divio(['platform', 'start', '--data-dir', dataDir, '--port', String(port), '--name', name, '--json']);
  registry = `127.0.0.1:${port}`;
  service = `${name}-app-${slug}-test`;
  await divio(['project', 'create', slug]);
  app = join(work, slug);
  console.log('first deploy (creates the service; not timed)...');
  await divioDeploy();

  const t = { divioSame: [], rawSame: [], divioChange: [], rawChange: [] };
  for (let round = 1; round <= rounds; round++) {
    // (a) nothing changed. The raw side rebuilds and pushes the very image the service runs (all cached).
    const commit = await head();
    const runs = [async () => t.divioSame.push(await divioDeploy()), async () => t.rawSame.push(await rawDeploy(commit))];
    for (const run of round % 2 ? runs : runs.reverse()) await run();
    console.log(`(a) round ${round}: divio ${fmt(t.divioSame.at(-1).seconds)}, raw ${fmt(t.rawSame.at(-1).seconds)}`);
  }
  for (let round = 1; round <= rounds; round++) {
    // (b) a one-line change each, so both sides build a layer that is not in the cache.
    const runs = [
      async () => {
        await commitChange(round, 'divio');
        const started = now();
        await git(['push', '-q', 'origin', 'main']);
        const pushed = now() - started;
        const result = await divioDeploy();
        result.deployOnly = result.seconds;
        result.seconds += pushed;
        result.phases = Object.fromEntries([['git push', pushed], ...Object.entries(result.phases).map(([k, v]) => [k, v + pushed])]);
        t.divioChange.push(result);
      },
      async () => t.rawChange.push(await rawDeploy(await commitChange(round, 'raw'))),
    ];
    for (const run of round % 2 ? runs : runs.reverse()) await run();
    console.log(`(b) round ${round}: divio ${fmt(t.divioChange.at(-1).seconds)}, raw ${fmt(t.rawChange.at(-1).seconds)}`);
  }

  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v.map((r) => r.seconds))]));
  const same = m.divioSame / m.rawSame;
  const change = m.divioChange / m.rawChange;
  console.log('');
  console.log(`medians of ${rounds} rounds`);
  console.log(`(a) raw build + push + service update (no change)  ${fmt(m.rawSame)}`);
  console.log(`(a) divio project deploy test (no change)          ${fmt(m.divioSame)}   ${same.toFixed(2)}x (goal <= ${goal}x: ${same <= goal ? 'met' : 'MISSED'})`);
  printDivioPhases('(a)', t.divioSame);
  printRawPhases('(a)', t.rawSame);
  console.log(`(b) raw build + push + service update (one line)   ${fmt(m.rawChange)}`);
  console.log(`(b) git push + divio project deploy test           ${fmt(m.divioChange)}   ${change.toFixed(2)}x (goal <= ${goal}x: ${change <= goal ? 'met' : 'MISSED'})`);
  const deployOnly = median(t.divioChange.map((r) => r.deployOnly));
  console.log(`    of which divio project deploy test alone        ${fmt(deployOnly)}   ${(deployOnly / m.rawChange).toFixed(2)}x`);
  printDivioPhases('(b)', t.divioChange);
  printRawPhases('(b)', t.rawChange);
  return same <= goal && change <= goal;
}

let ok = false;
try {
  ok = await main();
} catch (error) {
  console.error(error);
} finally {
  console.log(`removing the platform ${name}...`);
  await removePlatform(name, { dataDir, keepData: false }).catch((error) => console.error(`removing the platform: ${error.message}`));
  if (registry) {
    const images = await execa('docker', ['image', 'ls', '-q', '--filter', `reference=${registry}/${slug}`], { reject: false });
    const ids = [...new Set(String(images.stdout).split('\n').filter(Boolean))];
    if (ids.length) await execa('docker', ['image', 'rm', '-f', ...ids], { reject: false });
  }
  if (work) await rm(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
