import { describe, it } from 'vitest';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { readFileSync } from 'node:fs';
import { createPsqlGuard } from '../../src/services/project/db/psql-guard.js';

async function run(buf: Buffer, size: number) {
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) chunks.push(buf.subarray(i, i + size));
  const g = createPsqlGuard();
  try { await pipeline(Readable.from(chunks), g, new Writable({ write(_c, _e, cb) { cb(); } })); return 'ok'; }
  catch (e) { return (e as Error).message; }
}
describe('dbg', () => {
  it('x', async () => {
    const d = JSON.parse(readFileSync('/tmp/pgfuzz/bugs.txt', 'utf8').trim().split('\n')[0]!);
    const full = Buffer.from(d.s, 'latin1');
    const lines = full.toString('latin1').split('\n');
    for (let n = 1; n <= 7; n++) {
      const buf = Buffer.from(lines.slice(0, n).join('\n') + '\n', 'latin1');
      console.log(n, JSON.stringify(lines[n-1]), await run(buf, buf.length), '|', await run(buf, 1));
    }
  });
});
