#!/usr/bin/env node
// Goal: `divio project pull db` and `divio project push db` of a database of at least 500 MB take at
// most 0.8x the raw pipe `pg_dump -Fc | pg_restore` between the same two servers in the same run,
// and the CLI's memory stays flat whatever the database's size.
//   raw push: docker exec LOCAL-DB pg_dump -Fc app | docker exec -i CLUSTER pg_restore -d NEW (after createdb)
//   raw pull: docker exec CLUSTER pg_dump -Fc ENVDB | docker exec -i LOCAL-DB pg_restore -d NEW (after createdb)
// divio's side does more than the raw pipe: digests on both ends, a restore into a new database
// and the atomic swap (the replaced database kept as a backup on the platform).
// The bench starts a platform of its own (`--name divio-bench-db`, own data and config dirs, a free
// port) and removes it at the end. Usage: node bench/db-transfer.js [rounds] [rows]
// (needs Docker and `npm run build`; default 3 rounds, 2,400,000 rows ≈ 770 MB).
import { execa } from 'execa';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findFreePort } from '../dist/core/ports.js';
import { removePlatform } from '../dist/services/platform/remove.js';

const repo = join(fileURLToPath(import.meta.url), '..', '..');
const bin = join(repo, 'bin', 'run.js');
const rounds = Number(process.argv[2] ?? 3);
const rows = Number(process.argv[3] ?? 2_400_000);
const name = 'divio-bench-db';
const slug = 'benchdb';
const goal = 0.8;

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (s) => `${s.toFixed(2)} s`;
const mib = (kb) => `${(kb / 1024).toFixed(0)} MiB`;

let work;
let dataDir;
let env;
let app;

const divio = (args, options = {}) => execa('node', [bin, ...args], { cwd: app ?? work, env, ...options });

async function container(...labels) {
  const { stdout } = await execa('docker', ['ps', '-q', ...labels.flatMap((label) => ['--filter', `label=${label}`])]);
  const id = stdout.split('\n')[0];
  if (!id) throw new Error(`no running container with ${labels.join(', ')}`);
  return id;
}
const psql = (id, db, sql) => execa('docker', ['exec', '-i', id, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', db], { input: sql });

/** Runs the CLI, sampling its peak RSS (VmHWM) until it exits. */
async function timedDivio(args) {
  const started = now();
  const child = divio(args);
  let peakKb = 0;
  const sample = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      peakKb = Math.max(peakKb, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
    } catch {
      // exited between samples
    }
  }, 50);
  try {
    await child;
  } finally {
    clearInterval(sample);
  }
  return { seconds: now() - started, peakKb };
}

async function rawPipe(fromId, fromDb, toId, toDb) {
  await psql(toId, 'postgres', `DROP DATABASE IF EXISTS ${toDb} WITH (FORCE); CREATE DATABASE ${toDb};`);
  const started = now();
  // Not buffered: a dump this size would pass execa's maxBuffer.
  await execa('docker', ['exec', fromId, 'pg_dump', '-Fc', '-U', 'postgres', '-d', fromDb], { buffer: false }).pipe(
    'docker',
    ['exec', '-i', toId, 'pg_restore', '--no-owner', '--no-acl', '--exit-on-error', '-U', 'postgres', '-d', toDb],
    { buffer: false },
  );
  const seconds = now() - started;
  await psql(toId, 'postgres', `DROP DATABASE ${toDb} WITH (FORCE);`);
  return seconds;
}

try {
  work = await mkdtemp(join(tmpdir(), 'divio-bench-db-'));
  dataDir = join(work, 'platform');
  const configDir = join(work, 'config');
  await mkdir(configDir);
  env = { ...process.env, DIVIO_CONFIG_DIR: configDir, NO_COLOR: '1', CI: 'true' };
  delete env.DIVIO_TOKEN;
  delete env.DIVIO_ENDPOINT;
  await removePlatform(name).catch(() => {});
  const port = await findFreePort();
  console.log(`starting the platform ${name} on port ${port}...`);
  await divio(['platform', 'start', '--data-dir', dataDir, '--port', String(port), '--name', name, '--json']);
  await divio(['project', 'create', slug, '--json']);
  app = join(work, slug);
  await divio(['project', 'pull', 'db']); // starts the local database
  const localId = await container(`com.docker.compose.project=${slug}`, 'com.docker.compose.service=db');
  const clusterId = await container(`com.docker.swarm.service.name=${name}-postgres`);
  const envDb = `${slug}_test`;

  console.log(`filling the local database (${rows.toLocaleString()} rows)...`);
  await psql(localId, 'app', `CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload text, amount numeric, created timestamptz);
    INSERT INTO events SELECT g, 'kind-' || (g % 17), md5(g::text) || repeat(md5((g*7)::text), 5), g * 0.01, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, ${rows}) g;
    CREATE INDEX ON events (kind, created); VACUUM ANALYZE events;`);
  const size = (await execa('docker', ['exec', localId, 'psql', '-XAt', '-U', 'postgres', '-d', 'app', '-c', "SELECT pg_size_pretty(pg_database_size('app'))"])).stdout.trim();
  console.log(`local database: ${size}`);
  // The environment's database starts as a copy, so both directions move the same data.
  await divio(['project', 'push', 'db', 'test', '--yes']);

  const t = { rawPush: [], push: [], rawPull: [], pull: [] };
  const peaks = { push: [], pull: [] };
  for (let round = 1; round <= rounds; round++) {
    const rawPush = await rawPipe(localId, 'app', clusterId, 'rawbench');
    const push = await timedDivio(['project', 'push', 'db', 'test', '--yes']);
    const rawPull = await rawPipe(clusterId, envDb, localId, 'rawbench');
    const pull = await timedDivio(['project', 'pull', 'db', 'test']);
    t.rawPush.push(rawPush);
    t.push.push(push.seconds);
    t.rawPull.push(rawPull);
    t.pull.push(pull.seconds);
    peaks.push.push(push.peakKb);
    peaks.pull.push(pull.peakKb);
    console.log(
      `round ${round}: raw push ${fmt(rawPush)}, divio push ${fmt(push.seconds)} (peak RSS ${mib(push.peakKb)}); ` +
        `raw pull ${fmt(rawPull)}, divio pull ${fmt(pull.seconds)} (peak RSS ${mib(pull.peakKb)})`,
    );
  }
  const ratio = (a, b) => median(a) / median(b);
  const pushRatio = ratio(t.push, t.rawPush);
  const pullRatio = ratio(t.pull, t.rawPull);
  console.log(`\ndatabase ${size}, ${rows.toLocaleString()} rows, medians of ${rounds}:`);
  console.log(`  raw pg_dump -Fc | pg_restore (local → cluster)  ${fmt(median(t.rawPush))}`);
  console.log(`  divio project push db test                       ${fmt(median(t.push))}  ${pushRatio.toFixed(2)}x (goal <= ${goal}x: ${pushRatio <= goal ? 'met' : 'MISSED'})`);
  console.log(`  raw pg_dump -Fc | pg_restore (cluster → local)  ${fmt(median(t.rawPull))}`);
  console.log(`  divio project pull db test                       ${fmt(median(t.pull))}  ${pullRatio.toFixed(2)}x (goal <= ${goal}x: ${pullRatio <= goal ? 'met' : 'MISSED'})`);
  console.log(`  CLI peak RSS: push ${mib(Math.max(...peaks.push))}, pull ${mib(Math.max(...peaks.pull))}`);
  process.exitCode = pushRatio <= goal && pullRatio <= goal ? 0 : 1;
} finally {
  console.log(`removing the platform ${name}...`);
  if (app) await divio(['project', 'down', '--volumes']).catch(() => {});
  await removePlatform(name, { dataDir, keepData: false }).catch((error) => console.error(`removing the platform: ${error.message}`));
  if (work) await rm(work, { recursive: true, force: true });
}
