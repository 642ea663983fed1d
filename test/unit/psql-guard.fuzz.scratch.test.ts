import { describe, it } from 'vitest';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { spawnSync } from 'node:child_process';
import { writeFileSync, appendFileSync } from 'node:fs';
import { createPsqlGuard } from '../../src/services/project/db/psql-guard.js';

const FRAGS = [
  "'", "'", "'", "E'", "e'", "B'", "X'", "N'", "U&'", "U&\"", '"', '"', '$$', '$a$', '$b$', '$1', '$', '\\', '\\\\', "\\'", "''",
  '\n', '\n', '\n', '\r\n', '\r', ' ', ' ', '\t', '--', '/*', '*/', ';', ';', ';', '(', ')', '1', '1e', '1.', '.5', '::', ':', ':x', ":'x'",
  'SELECT ', 'SELECT ', 'x', 'e', 'b', 'u', '\nCOPY t FROM stdin;', 'COPY t FROM stdin;\n', '\n\\.\n', '\\echo MARK', '\\echo MARK', ' \\echo MARK',
  'BEGIN', 'END', 'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC ', 'CASE',
  '\nSET standard_conforming_strings = off;\n', '\nSET standard_conforming_strings = on;\n', '\f', 'é', '-', '/', '*', '&', 'a$', '\\N', '\\.',
  "SELECT 'a\\';", "\nSELECT E'a'\n", "\nSELECT 'x'\n", "\nSELECT set_config('standard_conforming_strings', 'off', false);\n",
  "\x95", "\x95\\", "|", "\x81", "\nSET client_encoding = 'UTF8';\n", "1e1", "0x", "1_0", "$1", "\\;", "\t", "e", "E", "'\\\\'", "E'\\\\'", "$1e", ".e",
];

function rnd(n: number) { return Math.floor(Math.random() * n); }
const LINE_STARTS = ['\\restrict k1\n', '\\connect fuzz\n', '\\unrestrict k1\n', 'GRANT ALL ON t TO postgres;\n', 'ALTER TABLE t OWNER TO postgres;\n',
  "CREATE DATABASE x;\n", '--\n-- PostgreSQL database dump\n--\n', "COPY t FROM stdin;\nx\\echo MARK\n\\echo MARK\n\\.\n", "SELECT set_config('standard_conforming_strings', 'off', false), ",
  "SELECT set_config('standard_conforming_strings', 'on', false);", "COPY t FROM stdin; SELECT '", "COPY t FROM stdin; GRANT ALL", "COPY t FROM stdin; COPY t FROM stdin; REVOKE x\n\\echo MARK\n\\.\n\\echo MARK\n\\.\nON t FROM y;", "COPY t FROM stdin; COPY t FROM stdin;\n\\echo MARK\n\\.\n\\echo MARK\n\\.\n"];
function gen(): string {
  const lines = 1 + rnd(6);
  let s = '';
  for (let l = 0; l < lines; l++) {
    if (rnd(3) === 0) s += LINE_STARTS[rnd(LINE_STARTS.length)];
    const n = 1 + rnd(12);
    for (let i = 0; i < n; i++) s += FRAGS[rnd(FRAGS.length)];
    s += rnd(4) === 0 ? '\r\n' : '\n';
  }
  if (!s.includes('MARK')) s += FRAGS[rnd(FRAGS.length)] + '\\echo MARK\n';
  return s;
}

async function guard(input: Buffer, whole = false): Promise<{ ok: true; out: Buffer } | { ok: false; err: string }> {
  const chunks: Buffer[] = [];
  if (whole) chunks.push(input);
  else for (let i = 0; i < input.length; ) { const k = 1 + rnd(8); chunks.push(input.subarray(i, i + k)); i += k; }
  const g = createPsqlGuard();
  const out: Buffer[] = [];
  try {
    await pipeline(Readable.from(chunks), g, async function* (src) { for await (const c of src) out.push(c as Buffer); });
    return { ok: true, out: Buffer.concat(out) };
  } catch (e) { return { ok: false, err: (e as Error).message }; }
}

function psql(input: Buffer, stop: boolean) {
  const r = spawnSync('psql', ['-h', '/tmp/pgfuzz', '-U', 'postgres', '-X', '-q', '-d', 'fuzz', '-o', '/dev/null', '-v', `ON_ERROR_STOP=${stop ? 1 : 0}`], { input, timeout: 10000 });
  const out = r.stdout.toString(); const err = r.stderr.toString();
  return { meta: out.includes('MARK') || /invalid command/.test(err), out, err };
}

describe('fuzz', () => {
  it('differential against psql', async () => {
    const N = Number(process.env.FUZZ_N ?? 300);
    let accepted = 0, refused = 0, fp = 0, bugs = 0;
    for (let k = 0; k < N; k++) {
      const s = gen();
      const input = Buffer.from(s, 'latin1');
      const g = await guard(input);
      const w = await guard(input, true);
      if (g.ok !== w.ok || (g.ok && w.ok && !g.out.equals(w.out)) || (!g.ok && !w.ok && g.err !== w.err)) {
        bugs++; appendFileSync('/tmp/pgfuzz/bugs.txt', JSON.stringify({ chunking: true, s, g, w }) + '\n');
      }
      if (process.env.FUZZ_NO_PSQL) continue;
      if (g.ok) {
        accepted++;
        const p = psql(g.out, false); const q = psql(g.out, true);
        if (p.meta || q.meta) { bugs++; appendFileSync('/tmp/pgfuzz/bugs.txt', JSON.stringify({ s, out: g.out.toString(), psqlOut: p.out, psqlErr: p.err.slice(0, 500) }) + '\n'); }
      } else {
        refused++;
        const p = psql(input, false);
        if (!p.meta) { fp++; if (fp < 200) appendFileSync('/tmp/pgfuzz/fp.txt', JSON.stringify({ s, err: g.err }) + '\n'); }
      }
    }
    console.log({ accepted, refused, fp, bugs });
  }, 3600_000);
});
