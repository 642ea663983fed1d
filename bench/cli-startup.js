#!/usr/bin/env node
// Goal (issue 3): `divio --version` at most 2x and `divio project --help` at most 3x the wall time
// of a bare `node -e 0`, all measured in this one run. Prints medians and ratios; exits 1 if a goal
// is missed. Usage: node bench/cli-startup.js [runs]   (needs `npm run build` first)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const runs = Number(process.argv[2] ?? 40);
const bin = join(fileURLToPath(import.meta.url), '..', '..', 'bin', 'run.js');

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function measure(args) {
  const times = [];
  for (let i = 0; i < runs + 3; i++) {
    const start = process.hrtime.bigint();
    const result = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (result.status !== 0) throw new Error(`${args.join(' ')} failed: ${result.stderr}`);
    if (i >= 3) times.push(ms); // the first runs warm the file cache
  }
  return median(times);
}

// Interleave the measurements so drift in machine load hits all three alike.
const base = [], version = [], help = [];
for (let round = 0; round < 4; round++) {
  base.push(measure(['-e', '0']));
  version.push(measure([bin, '--version']));
  help.push(measure([bin, 'project', '--help']));
}
const node = median(base);
const rows = [
  ['node -e 0', node, 1, null],
  ['divio --version', median(version), median(version) / node, 2],
  ['divio project --help', median(help), median(help) / node, 3],
];
let ok = true;
for (const [name, ms, ratio, goal] of rows) {
  const verdict = goal === null ? '' : ratio <= goal ? `(goal <= ${goal}x: met)` : `(goal <= ${goal}x: MISSED)`;
  if (goal !== null && ratio > goal) ok = false;
  console.log(`${name.padEnd(22)} ${ms.toFixed(1).padStart(7)} ms  ${ratio.toFixed(2)}x ${verdict}`);
}
process.exit(ok ? 0 : 1);
