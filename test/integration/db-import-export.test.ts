/**
 * import db / export db against a real PostgreSQL in the project's db container: every format,
 * every kind of bad input (the database stays exactly as it was, no temporary database remains),
 * meta-commands refused, and export -> import round trips.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { mkdtemp, readFile, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { BIN, TEST_CONFIG_DIR, divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { minimalProject, type TestProject } from '../helpers/projects.js';

describeWithDocker('import db / export db', () => {
  let project: TestProject;
  let dbContainer: string;
  let work: string;
  let baseline: string;
  const dumps: Record<string, string> = {};

  const psql = async (sql: string, database = 'app') => {
    const r = await execa('docker', ['exec', '-i', dbContainer, 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql });
    return r.stdout.trim();
  };
  /** Row count and md5 of every row of the test tables: equal means the data is identical. */
  const checksum = () =>
    psql(`SELECT (SELECT count(*) FROM items) || ':' || (SELECT md5(string_agg(i::text, '|' ORDER BY id)) FROM items i) || ':' || (SELECT count(*) FROM notes);`);
  const listLeftovers = () => psql(`SELECT coalesce(string_agg(datname, ','), '') FROM pg_database WHERE datname LIKE 'app\\_\\_divio%';`, 'postgres');
  /** Temporary databases still there once the replaced one's background drop had time to finish. */
  const leftovers = async () => {
    for (let i = 0; i < 60; i++) {
      const names = await listLeftovers();
      if (names === '' || !names.split(',').every((n) => n.includes('__divio_old_'))) return names;
      await new Promise((r) => setTimeout(r, 250));
    }
    return listLeftovers();
  };
  const importDb = (file: string, extra: string[] = []) => divio(['project', 'import', 'db', file, ...extra], { cwd: project.dir });
  const dumpFromContainer = async (name: string, args: string[]) => {
    const path = join(work, name);
    await execa('docker', ['exec', dbContainer, 'pg_dump', '-U', 'postgres', '-d', 'app', ...args], { stdout: { file: path } });
    return path;
  };

  beforeAll(async () => {
    project = await minimalProject('dbio');
    work = await mkdtemp(join(tmpdir(), 'divio-dumps-'));
    const up = await divio(['project', 'up', '--skip-release'], { cwd: project.dir });
    expect(up.exitCode, String(up.stderr)).toBe(0);
    dbContainer = (await execa('docker', ['ps', '-q', '--filter', `label=com.docker.compose.project=${project.slug}`, '--filter', 'label=com.docker.compose.service=db'])).stdout.trim();
    await psql(`
      CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, body text, price numeric(10,2), tags text[], created timestamptz DEFAULT '2026-01-01');
      INSERT INTO items (name, body, price, tags)
        SELECT 'item ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE E'line\\twith tab \\\\ backslash ü ' || md5(g::text) END, g * 1.25, ARRAY['a' || g, 'b']
        FROM generate_series(1, 1500) g;
      CREATE TABLE notes (id int PRIMARY KEY, note text);
      INSERT INTO notes SELECT g, repeat('n', g % 50) FROM generate_series(1, 1200) g;
      CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql AS $$ SELECT upper(t) || E'\\\\!' $$;
      CREATE VIEW expensive AS SELECT * FROM items WHERE price > 1000;
    `);
    baseline = await checksum();
    expect(baseline).toMatch(/^1500:[0-9a-f]{32}:1200$/);
    dumps.plain = await dumpFromContainer('app.sql', []);
    dumps.custom = await dumpFromContainer('app.custom', ['-Fc']);
    dumps.gzip = join(work, 'app.sql.gz');
    await writeFile(dumps.gzip, gzipSync(await readFile(dumps.plain)));
    // Names say nothing: the format is detected from the content.
    dumps.customNamedSql = join(work, 'really-custom.sql');
    await writeFile(dumps.customNamedSql, await readFile(dumps.custom));
  });
  afterAll(async () => {
    await project?.destroy();
  });

  beforeEach(async () => {
    // Start each test from different data, so a successful import is visible as a change.
    await psql('DROP VIEW IF EXISTS expensive; DROP TABLE IF EXISTS items, notes CASCADE; CREATE TABLE items (id int, name text); CREATE TABLE notes (id int); INSERT INTO items VALUES (1, $$other$$);');
  });

  it.each([
    ['plain SQL', 'plain', 'plain', 'none'],
    ['gzip SQL', 'gzip', 'plain', 'gzip'],
    ['custom format', 'custom', 'custom', 'none'],
    ['custom format named .sql', 'customNamedSql', 'custom', 'none'],
  ])('imports a %s dump of 1,000+ rows', async (_label, key, format, compression) => {
    const result = await importDb(dumps[key]!, ['--json']);
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(json(result)).toMatchObject({ format, compression, replacedExisting: true });
    expect(await checksum()).toBe(baseline);
    expect(await psql(`SELECT shout('x')`)).toBe('X\\!');
    expect(await leftovers()).toBe('');
  });

  it('imports from standard input', async () => {
    const result = await divio(['project', 'import', 'db', '-'], { cwd: project.dir, inputFile: dumps.gzip });
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(await checksum()).toBe(baseline);
  });

  it('imports a hand-written SQL file that has no pg_dump header or closing line', async () => {
    const file = join(work, 'hand.sql');
    await writeFile(file, "CREATE TABLE items (id int, name text);\nINSERT INTO items VALUES (1, 'a'), (2, 'b');\nCREATE TABLE notes (id int);\n");
    const result = await importDb(file);
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(await psql('SELECT count(*) FROM items')).toBe('2');
  });

  {
    const cases: [string, () => Promise<string>, RegExp][] = [
      ['an empty file', async () => write('empty.sql', Buffer.alloc(0)), /empty/i],
      ['a garbage file', async () => write('garbage.bin', Buffer.from([0x00, 0x13, 0x37, 0xff, 0xfe, 0x00, 0x01, 0x02, 0x03, 0x80, 0x81])), /binary|not a dump|refus/i],
      ['a zip file', async () => write('x.zip', Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(100)])), /zip/i],
      ['a truncated gzip', async () => write('cut.sql.gz', (await readFile(dumps.gzip!)).subarray(0, Math.floor((await stat(dumps.gzip!)).size / 2))), /gzip|truncat|unexpected end/i],
      ['a custom dump cut in half', async () => write('cut.custom', (await readFile(dumps.custom!)).subarray(0, Math.floor((await stat(dumps.custom!)).size / 2))), /custom-format dump failed to restore|could not read|end of file/i],
      ['pg_dump plain output cut off mid-way', async () => write('cut.sql', (await readFile(dumps.plain!)).subarray(0, Math.floor((await stat(dumps.plain!)).size * 0.6))), /incomplete|cut off/i],
      ['an SQL error half-way', async () => write('error.sql', "CREATE TABLE items (id int, name text);\nINSERT INTO items VALUES (1, 'a');\nINSERT INTO no_such_table VALUES (1);\nCREATE TABLE notes (id int);\n"), /no_such_table/],
      ['a psql meta-command', async () => write('meta.sql', "CREATE TABLE items (id int, name text);\nSELECT 1; \\! touch /tmp/pwned\nCREATE TABLE notes (id int);\n"), /meta-command \\!/],
    ];
    async function write(name: string, data: Buffer | string) {
      const path = join(work, name);
      await writeFile(path, data);
      return path;
    }
    it.each(cases)('refuses %s and keeps the database exactly as it was', async (_label, make, message) => {
      // Restore the full data set first so "as it was" is the rich baseline.
      expect((await importDb(dumps.custom!)).exitCode).toBe(0);
      const before = await checksum();
      const result = await importDb(await make());
      expect(result.exitCode).not.toBe(0);
      expect(String(result.stderr)).toMatch(message);
      expect(await checksum()).toBe(before);
      expect(await leftovers()).toBe('');
      const pwned = await execa('docker', ['exec', dbContainer, 'test', '-e', '/tmp/pwned'], { reject: false });
      expect(pwned.exitCode).toBe(1);
    });
  }

  it('drops temporary databases an interrupted import left behind', async () => {
    await psql('CREATE DATABASE "app__divio_import_deadbeef"', 'postgres');
    const result = await importDb(dumps.custom!, ['--json']);
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(json(result).leftoversDropped).toContain('app__divio_import_deadbeef');
    expect(await leftovers()).toBe('');
  });

  it.each(['custom', 'plain', 'gzip'])('export (%s) then import gives identical data', async (format) => {
    expect((await importDb(dumps.custom!)).exitCode).toBe(0);
    const file = join(work, `export.${format}`);
    const exported = await divio(['project', 'export', 'db', file, '--format', format, '--json'], { cwd: project.dir });
    expect(exported.exitCode, String(exported.stderr)).toBe(0);
    const result = json(exported);
    expect(result).toMatchObject({ format, file, verified: true });
    expect(result.bytes).toBe((await stat(file)).size);
    await psql('DELETE FROM items WHERE id % 2 = 0');
    expect(await checksum()).not.toBe(baseline);
    expect((await importDb(file)).exitCode).toBe(0);
    expect(await checksum()).toBe(baseline);
  });

  it('exports to standard output', async () => {
    expect((await importDb(dumps.custom!)).exitCode).toBe(0);
    const file = join(work, 'stdout.dump');
    const exported = await execa('node', [BIN, 'project', 'export', 'db', '-'], { cwd: project.dir, stdin: 'ignore', stdout: { file }, env: { NO_COLOR: '1', DIVIO_CONFIG_DIR: TEST_CONFIG_DIR }, timeout: 60_000 });
    expect(exported.exitCode).toBe(0);
    expect((await readFile(file)).subarray(0, 5).toString()).toBe('PGDMP');
    await psql('DELETE FROM notes');
    expect((await importDb(file)).exitCode).toBe(0);
    expect(await checksum()).toBe(baseline);
  });
});
