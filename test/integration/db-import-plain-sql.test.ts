/**
 * Plain SQL imports sent by divio itself (no psql), against a real PostgreSQL in the project's db
 * container: pg_dump output with COPY data, plain and gzip'd; a dump in SJIS whose trail bytes
 * are 0x5C ('\'), read as the server reads it; the SJIS trick that made psql run a meta-command
 * behind a lexer that assumed ASCII-safe bytes; and failures that leave the database as it was.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { minimalProject, type TestProject } from '../helpers/projects.js';

describeWithDocker('import db: plain SQL without psql', () => {
  let project: TestProject;
  let dbContainer: string;
  let work: string;
  let plain: string;
  let baseline: string;

  const psql = async (sql: string, database = 'app') => {
    const r = await execa('docker', ['exec', '-i', dbContainer, 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql });
    return r.stdout.trim();
  };
  const checksum = () =>
    psql(`SELECT (SELECT count(*) FROM items) || ':' || (SELECT md5(string_agg(i::text, '|' ORDER BY id)) FROM items i) || ':' || (SELECT count(*) FROM events);`);
  const importDb = (file: string, extra: string[] = []) => divio(['project', 'import', 'db', file, ...extra], { cwd: project.dir });
  const write = async (name: string, data: Buffer | string) => {
    const path = join(work, name);
    await writeFile(path, data);
    return path;
  };
  const pwned = async () => (await execa('docker', ['exec', dbContainer, 'test', '-e', '/tmp/pwned'], { reject: false })).exitCode === 0;
  /** The database as it stands, and no temporary database left over (a replaced one may still be dropping). */
  const state = async () => {
    for (let i = 0; i < 60; i++) {
      const names = await psql(`SELECT coalesce(string_agg(datname, ','), '') FROM pg_database WHERE datname LIKE 'app\\_\\_divio\\_import%';`, 'postgres');
      if (names === '') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    return { data: await checksum(), leftovers: await psql(`SELECT count(*) FROM pg_database WHERE datname LIKE 'app\\_\\_divio\\_import%';`, 'postgres') };
  };

  beforeAll(async () => {
    project = await minimalProject('plainsql');
    work = await mkdtemp(join(tmpdir(), 'divio-plain-sql-'));
    const up = await divio(['project', 'up', '--skip-release'], { cwd: project.dir });
    expect(up.exitCode, String(up.stderr)).toBe(0);
    dbContainer = (await execa('docker', ['ps', '-q', '--filter', `label=com.docker.compose.project=${project.slug}`, '--filter', 'label=com.docker.compose.service=db'])).stdout.trim();
    // Data that COPY must carry exactly: tabs, newlines, backslashes, \. at a line's start, NULLs, non-ASCII.
    await psql(String.raw`
      CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, body text, price numeric(10,2), tags text[]);
      INSERT INTO items (name, body, price, tags)
        SELECT 'item ' || g,
               CASE WHEN g % 7 = 0 THEN NULL WHEN g % 5 = 0 THEN E'\\.\nnot the end\t\\! x' ELSE E'line\twith tab \\ backslash ü 表 ' || md5(g::text) END,
               g * 1.25, ARRAY['a' || g, 'b;c']
        FROM generate_series(1, 3000) g;
      CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb);
      INSERT INTO events SELECT g, jsonb_build_object('n', g, 's', repeat('x', g % 40)) FROM generate_series(1, 20000) g;
      CREATE FUNCTION shout(t text) RETURNS text LANGUAGE plpgsql AS $body$ BEGIN RETURN upper(t) || E'\\!' || $$;$$; END; $body$;
      CREATE FUNCTION total(a integer, b integer) RETURNS integer LANGUAGE sql BEGIN ATOMIC SELECT a + b; END;
    `);
    baseline = await checksum();
    expect(baseline).toMatch(/^3000:[0-9a-f]{32}:20000$/);
    plain = join(work, 'app.sql');
    await execa('docker', ['exec', dbContainer, 'pg_dump', '-U', 'postgres', '-d', 'app'], { stdout: { file: plain } });
  });
  afterAll(async () => {
    await project?.destroy();
  });
  beforeEach(async () => {
    await psql('DROP TABLE IF EXISTS items, events, "表" CASCADE; DROP FUNCTION IF EXISTS shout(text); DROP FUNCTION IF EXISTS total(integer, integer); CREATE TABLE items (id int, name text); CREATE TABLE events (id int); INSERT INTO items VALUES (1, $$before$$);');
  });

  it.each([
    ['plain', false],
    ['gzip', true],
  ])('imports a %s pg_dump with COPY data, byte for byte', async (_label, gzip) => {
    const file = gzip ? await write('app.sql.gz', gzipSync(await readFile(plain))) : plain;
    const result = await importDb(file, ['--json']);
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(json(result)).toMatchObject({ format: 'plain', compression: gzip ? 'gzip' : 'none', replacedExisting: true });
    expect(await checksum()).toBe(baseline);
    expect(await psql(`SELECT shout('x') || total(1, 2)`)).toBe('X\\!;3');
    expect((await state()).leftovers).toBe('0');
    // the replaced database was kept as a local snapshot
    const snapshots = json(await divio(['project', 'snapshots', 'list', '--json'], { cwd: project.dir }));
    expect(JSON.stringify(snapshots)).toContain('import db');
  });

  // 表 is 0x95 0x5C in SJIS, ソ 0x83 0x5C, 能 0x94 0x5C: each ends in the byte of '\'.
  const sjis = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
  const HYO = [0x95, 0x5c];
  const SO = [0x83, 0x5c];
  const NOU = [0x94, 0x5c];

  it("imports pg_dump -E SJIS output and hand-written SJIS SQL whose trail bytes are '\\'", async () => {
    await psql(String.raw`CREATE TABLE "表" (id int PRIMARY KEY, "ソ" text); INSERT INTO "表" VALUES (1, E'表ソ能\\'), (2, E'\t能\nソ'), (3, NULL);`);
    const dumped = join(work, 'sjis.sql');
    await execa('docker', ['exec', dbContainer, 'pg_dump', '-E', 'SJIS', '-U', 'postgres', '-d', 'app'], { stdout: { file: dumped } });
    const dump = await readFile(dumped);
    expect(dump.toString('latin1')).toContain("SET client_encoding = 'SJIS';");
    expect(dump.includes(Buffer.from(HYO))).toBe(true);
    const expected = await psql(`SELECT string_agg(id || '=' || coalesce("ソ", 'NULL'), '|' ORDER BY id) FROM "表";`);

    expect((await importDb(dumped)).exitCode).toBe(0);
    expect(await psql(`SELECT string_agg(id || '=' || coalesce("ソ", 'NULL'), '|' ORDER BY id) FROM "表";`)).toBe(expected);
    expect(await psql("SELECT name FROM items")).toBe('before');

    // E-strings and identifiers whose last byte is '\': read as ASCII, E'表' would escape its closing quote.
    const hand = sjis(
      "SET client_encoding = 'SJIS';\nCREATE TABLE ", HYO, " (x text);\nINSERT INTO ", HYO, " VALUES (E'", HYO, "'), (E'", SO, "\\\\'), ('", NOU, "');\n",
      'CREATE TABLE items (id int);\nCREATE TABLE events (id int);\n',
    );
    const result = await importDb(await write('hand-sjis.sql', hand));
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(await psql('SELECT string_agg(x, \'|\' ORDER BY x) FROM "表";')).toBe(['表', 'ソ\\', '能'].sort().join('|'));
  });

  it('refuses the SJIS trick that got a meta-command past a lexer that assumed ASCII-safe bytes, and keeps the database', async () => {
    expect((await importDb(plain)).exitCode).toBe(0);
    const before = await state();
    // Read as ASCII, E'\x95\' ... is one string running to the last quote; psql, reading SJIS,
    // ends the string after 表 and runs `\! touch /tmp/pwned`.
    const trick = sjis("SET client_encoding = 'SJIS';\nCREATE TABLE items (id int);\nSELECT E'", HYO, "' AS x;\n\\! touch /tmp/pwned\nSELECT ';';\n");
    const result = await importDb(await write('trick.sql', trick));
    expect(result.exitCode).toBe(4);
    expect(String(result.stderr)).toMatch(/meta-command \\! at line 4/);
    expect(await pwned()).toBe(false);
    expect(await state()).toEqual(before);
  });

  it('stops at the first error, naming its line, and keeps the database exactly as it was', async () => {
    expect((await importDb(plain)).exitCode).toBe(0);
    const before = await state();
    const statement = await importDb(await write('error.sql', "CREATE TABLE items (id int, name text);\nINSERT INTO items VALUES (1, 'a');\n\nINSERT INTO items\n  VALUES (2, 'b'), (3, no_such_column);\nCREATE TABLE events (id int);\n"));
    expect(statement.exitCode).toBe(4);
    expect(String(statement.stderr)).toMatch(/failed to restore at line 5:[\s\S]*no_such_column/);
    expect(await state()).toEqual(before);

    // bad COPY data: the dump's own line is named
    const dump = (await readFile(plain, 'utf8')).replace(/^(COPY public\.events [^\n]*\n(?:[^\n]*\n){99})[^\n]*\n/m, '$1not-a-number\t{}\n');
    const line = dump.slice(0, dump.indexOf('not-a-number')).split('\n').length;
    const copy = await importDb(await write('bad-copy.sql.gz', gzipSync(dump)));
    expect(copy.exitCode).toBe(4);
    expect(String(copy.stderr)).toContain(`failed to restore at line ${line} (data of the COPY at line `);
    expect(String(copy.stderr)).toMatch(/invalid input syntax for type bigint/);
    expect(await state()).toEqual(before);

    // a dump cut off in the middle of its COPY data
    const cut = await importDb(await write('cut.sql', (await readFile(plain)).subarray(0, Math.floor(dump.indexOf('not-a-number') * 0.9))));
    expect(cut.exitCode).toBe(4);
    expect(String(cut.stderr)).toMatch(/incomplete/);
    expect(await state()).toEqual(before);
  });
});
