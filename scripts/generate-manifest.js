#!/usr/bin/env node
// Build step: write oclif.manifest.json (so start-up never scans command files) and render every
// command's and topic's help into dist/help/, which bin/run.js prints without loading oclif.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Config, Help, Plugin } from '@oclif/core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
await rm(join(root, 'oclif.manifest.json'), { force: true });

const plugin = new Plugin({ root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true });
await plugin.load();
await writeFile(join(root, 'oclif.manifest.json'), JSON.stringify(plugin.manifest, null, 2) + '\n');

// Help is rendered at 80 columns with no colour: what oclif prints on a pipe or a default terminal.
process.env.OCLIF_COLUMNS = '80';
const config = await Config.load({ root });
if (config.commands.length === 0) throw new Error("no commands loaded")
class CapturingHelp extends Help {
  captured = [];
  log(...args) {
    this.captured.push(args.join(' '));
  }
}
// A fresh Config per page: oclif's formatTopics renames topics in place, corrupting later pages.
const render = async (argv) => {
  const fresh = await Config.load({ root });
  const help = new CapturingHelp(fresh, fresh.pjson.oclif.helpOptions ?? {});
  await help.showHelp(argv);
  return help.captured.join('\n') + '\n';
};

const helpDir = join(root, 'dist', 'help');
await rm(helpDir, { recursive: true, force: true });
await mkdir(helpDir, { recursive: true });
const ids = new Set(['']);
for (const command of config.commands) {
  if (command.hidden) continue;
  ids.add(command.id);
  for (const alias of command.aliases ?? []) ids.add(alias);
}
for (const topic of config.topics) ids.add(topic.name);
for (const id of ids) {
  const text = await render(id === '' ? [] : id.split(':'));
  await writeFile(join(helpDir, `${id === '' ? '_root' : id.replaceAll(':', '__')}.txt`), text);
}
console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands; help cached for ${ids.size} ids`);
