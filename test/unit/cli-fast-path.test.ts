import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { divio, REPO_ROOT } from '../helpers/cli.js';

const helpIds = readdirSync(join(REPO_ROOT, 'dist', 'help')).map((f) => f.replace(/\.txt$/, '').replaceAll('__', ':'));

describe('start-up fast path', () => {
  it('prints the version like oclif, without loading it', async () => {
    const fast = await divio(['--version']);
    const slow = await divio(['--version'], { env: { DIVIO_NO_FAST_PATH: '1' } });
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
    expect(fast.exitCode).toBe(0);
    expect(fast.stdout).toBe(slow.stdout);
    expect(fast.stdout).toContain(`divio/${pkg.version}`);
  });

  it('has a cached help page for every command, alias and topic', () => {
    for (const id of ['_root', 'project', 'project:up', 'app:up', 'project:import:db', 'project:export:db', 'login', 'doctor', 'platform']) {
      expect(helpIds).toContain(id);
    }
  });

  it.each(helpIds)('serves the same help as oclif for %s', async (id) => {
    const words = id === '_root' ? [] : id.split(':');
    const fast = await divio([...words, '--help']);
    const slow = await divio([...words, '--help'], { env: { DIVIO_NO_FAST_PATH: '1' } });
    expect(fast.exitCode).toBe(0);
    expect(fast.stdout).toBe(slow.stdout);
    expect(fast.stdout.length).toBeGreaterThan(20);
  });
});
