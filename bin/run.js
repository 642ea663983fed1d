#!/usr/bin/env node
// Entry point. `--version` and help are answered here, without loading oclif, from files made at
// build time (scripts/generate-manifest.js): start-up time is what users feel most.
import { readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const fastPath = process.env.DIVIO_NO_FAST_PATH === undefined;

function versionRequested() {
  return argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version');
}

/** The command/topic id a plain help request asks for, or undefined when oclif must decide. */
function helpId() {
  let words = argv;
  if (words[0] === 'help') words = words.slice(1);
  else if (words.length === 0) return '';
  else if (words.at(-1) === '--help' || words.at(-1) === '-h') words = words.slice(0, -1);
  else return undefined;
  if (!words.every((w) => /^[a-z][a-z0-9-]*$/.test(w))) return undefined;
  return words.join(':');
}

if (fastPath && versionRequested()) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.oclif.bin}/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`);
} else {
  const id = fastPath && (!process.stdout.isTTY || (process.stdout.columns ?? 80) >= 80) && !process.env.OCLIF_COLUMNS ? helpId() : undefined;
  let text;
  if (id !== undefined) {
    try {
      const file = id === '' ? '_root' : id.replaceAll(':', '__');
      text = readFileSync(new URL(`../dist/help/${file}.txt`, import.meta.url), 'utf8');
    } catch {
      text = undefined;
    }
  }
  if (text !== undefined) {
    process.stdout.write(text);
  } else {
    const { execute } = await import('@oclif/core');
    await execute({ dir: import.meta.url });
  }
}
