#!/usr/bin/env node
// Goal (issue 13 §9): `divio project import db dump.sql` (divio sends the SQL itself, COPY data
// streamed, into a scratch database swapped in atomically) at most 1.1x raw `psql` restoring the
// same plain pg_dump file (createdb + `psql -X -v ON_ERROR_STOP=1 < dump.sql` through `docker exec
// -i` from the host, as divio's import did before). Usage: node bench/db-import-plain.js [rows]
// (needs Docker and `npm run build`). Prints each timing (median of 3, interleaved) and the ratio;
// exits 1 if the goal is missed.
import { execa } from 'execa';
import { cp, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(fileURLToPath(import.meta.url), '..', '..');
const bin = join(repo, 'bin', 'run.js');
const rows = Number(process.argv[2] ?? 1_200_000);
const slug = `bench-plain-${process.pid}`;
const work = join(repo, 'bench', '.work', slug);
const rounds = 3;

const divio = (args) => execa('node', [bin, ...args], { cwd: work, env: { NO_COLOR: '1', CI: 'true' } });
let db;
const psql = (sql, database = 'app') => execa('docker', ['exec', db, 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database, '-c', sql]);
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
    INSERT INTO events SELECT g, 'kind-' || (g % 17), md5(g::text) || repeat(md5((g*7)::text), 5) || E'\\\\ \\t', g * 0.01, '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, ${rows}) g;
    CREATE INDEX ON events (kind, created);
    CREATE TABLE small (id int PRIMARY KEY, note text);
    INSERT INTO small SELECT g, 'note ' || g FROM generate_series(1, 1000) g;`);
  // Many small statements too: a schema of 300 tables with indexes and comments.
  const ddl = Array.from({ length: 300 }, (_, k) => `CREATE TABLE t${k} (id int PRIMARY KEY, a text, b int); CREATE INDEX ON t${k} (b); COMMENT ON TABLE t${k} IS 'table ${k}';`).join('\n');
  await psql(ddl);
  await psql('VACUUM ANALYZE events');
  const dump = join(work, 'dump.sql');
  await execa('docker', ['exec', db, 'pg_dump', '-U', 'postgres', '-d', 'app', '-f', '/tmp/bench-plain.sql']);
  await execa('docker', ['cp', `${db}:/tmp/bench-plain.sql`, dump]);
  await execa('docker', ['exec', db, 'rm', '/tmp/bench-plain.sql']);
  const size = (await stat(dump)).size;
  const statements = Number((await execa('grep', ['-c', ';$', dump])).stdout);
  console.log(`plain dump: ${(size / 1e6).toFixed(0)} MB, ~${statements} statements`);

  const t = { raw: [], ours: [] };
  for (let round = 0; round < rounds; round++) {
    const raw = async () => {
      await psql('DROP DATABASE IF EXISTS rawcopy', 'postgres');
      await psql('CREATE DATABASE rawcopy TEMPLATE template0', 'postgres');
      await execa('docker', ['exec', '-i', db, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', 'rawcopy'], { inputFile: dump, stdout: 'ignore' });
    };
    const ours = () => divio(['project', 'import', 'db', dump, '--no-snapshot']);
    // who goes first alternates by round
    if (round % 2 === 0) {
      t.raw.push(await time(raw));
      await psql('DROP DATABASE IF EXISTS rawcopy', 'postgres');
      t.ours.push(await time(ours));
    } else {
      t.ours.push(await time(ours));
      t.raw.push(await time(raw));
      await psql('DROP DATABASE IF EXISTS rawcopy', 'postgres');
    }
    console.log(`round ${round + 1}: raw psql ${t.raw.at(-1).toFixed(2)} s, divio ${t.ours.at(-1).toFixed(2)} s`);
  }
  const rawMedian = median(t.raw);
  const ourMedian = median(t.ours);
  const ratio = ourMedian / rawMedian;
  console.log(`raw createdb + psql < dump.sql   ${rawMedian.toFixed(2)} s`);
  console.log(`divio project import db dump.sql ${ourMedian.toFixed(2)} s   ${ratio.toFixed(2)}x (goal <= 1.1x: ${ratio <= 1.1 ? 'met' : 'MISSED'})`);
  return ratio <= 1.1;
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
