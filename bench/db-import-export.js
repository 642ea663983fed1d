#!/usr/bin/env node
// Goal (issue 3): `divio project import db` at most 1.1x raw `pg_restore -j 2`, and `divio project
// export db` at most 1.0x raw `pg_dump -Fc`, for a database of at least 500 MB, both raw tools run in
// the same db container in the same run. Usage: node bench/db-import-export.js [rows]  (needs Docker
// and `npm run build`). Prints each timing (median of 3) and the ratios; exits 1 if a goal is missed.
import { execa } from 'execa';
import { cp, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(fileURLToPath(import.meta.url), '..', '..');
const bin = join(repo, 'bin', 'run.js');
const rows = Number(process.argv[2] ?? 2_400_000);
const slug = `bench-dbio-${process.pid}`;
const work = join(repo, 'bench', '.work', slug);
const rounds = 3;

const divio = (args) => execa('node', [bin, ...args], { cwd: work, env: { NO_COLOR: '1', CI: 'true' } });
let db;
const sh = (args, options = {}) => execa('docker', ['exec', ...args], options);
const psql = (sql, database = 'app') => sh([db, 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database, '-c', sql]);
const time = async (fn) => {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  await rm(work, { recursive: true, force: true });
  await mkdir(join(repo, 'bench', '.work'), { recursive: true });
  await cp(join(repo, 'test', 'fixtures', 'projects', 'minimal'), work, { recursive: true });
  await writeFile(join(work, '.divio', 'config.json'), JSON.stringify({ app: slug }));
  await divio(['project', 'up', '--skip-release']);
  db = (await execa('docker', ['ps', '-q', '--filter', `label=com.docker.compose.project=${slug}`, '--filter', 'label=com.docker.compose.service=db'])).stdout.trim();

  console.log(`generating ${rows} rows...`);
  await psql(`CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload text, amount numeric, created timestamptz);
    INSERT INTO events SELECT g, 'kind-' || (g % 17), md5(g::text) || repeat(md5((g*7)::text), 5), g * 0.01, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, ${rows}) g;
    CREATE INDEX ON events (kind, created);`);
  await psql('VACUUM ANALYZE events');
  const size = Number((await psql(`SELECT pg_database_size('app')`)).stdout.trim());
  console.log(`database size: ${(size / 1e6).toFixed(0)} MB`);
  if (size < 500e6) throw new Error('database smaller than 500 MB: pass more rows');

  const rawDump = '/tmp/bench-raw.dump';
  const hostDump = join(work, 'raw.dump');
  const ourExport = join(work, 'ours.dump');
  const t = { rawExport: [], ourExport: [], rawImport: [], ourImport: [] };
  for (let round = 0; round < rounds; round++) {
    t.rawExport.push(await time(() => sh([db, 'pg_dump', '-Fc', '-U', 'postgres', '-d', 'app', '-f', rawDump])));
    await rm(ourExport, { force: true });
    t.ourExport.push(await time(() => divio(['project', 'export', 'db', ourExport])));
    if (round === 0) await execa('docker', ['cp', `${db}:${rawDump}`, hostDump]);
    t.rawImport.push(
      await time(async () => {
        await psql('DROP DATABASE IF EXISTS rawcopy', 'postgres');
        await psql('CREATE DATABASE rawcopy TEMPLATE template0', 'postgres');
        await sh([db, 'pg_restore', '-j', '2', '--no-owner', '--no-acl', '-U', 'postgres', '-d', 'rawcopy', rawDump]);
      }),
    );
    await psql('DROP DATABASE IF EXISTS rawcopy', 'postgres');
    t.ourImport.push(await time(() => divio(['project', 'import', 'db', hostDump])));
  }
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
  const exportRatio = m.ourExport / m.rawExport;
  const importRatio = m.ourImport / m.rawImport;
  console.log(`dump sizes: raw pg_dump -Fc ${((await stat(hostDump)).size / 1e6).toFixed(0)} MB, divio export ${((await stat(ourExport)).size / 1e6).toFixed(0)} MB`);
  console.log(`raw pg_dump -Fc              ${m.rawExport.toFixed(2)} s`);
  console.log(`divio project export db      ${m.ourExport.toFixed(2)} s   ${exportRatio.toFixed(2)}x (goal <= 1.0x: ${exportRatio <= 1.0 ? 'met' : 'MISSED'})`);
  console.log(`raw createdb + pg_restore -j2 ${m.rawImport.toFixed(2)} s`);
  console.log(`divio project import db      ${m.ourImport.toFixed(2)} s   ${importRatio.toFixed(2)}x (goal <= 1.1x: ${importRatio <= 1.1 ? 'met' : 'MISSED'})`);
  return exportRatio <= 1.0 && importRatio <= 1.1;
}

let ok = false;
try {
  ok = await main();
} finally {
  await execa('node', [bin, 'project', 'down', '--volumes'], { cwd: work, reject: false });
  await execa('docker', ['image', 'rm', '-f', `${slug}-web`], { reject: false });
  await rm(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
