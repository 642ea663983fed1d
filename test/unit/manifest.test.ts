import { describe, expect, it } from 'vitest';
import { ManifestError, parseManifest } from '../../src/shared/manifest-parse.js';

const valid = `
boilerplate: express
web:
  port: 8000
  command: node server.js
  local_command: node --watch server.js
  health_check: /healthz
release:
  command: node migrate.js
database:
  engine: postgres
  version: 15
media:
  enabled: true
`;

function problemsOf(text: string) {
  try {
    parseManifest(text, 'divio.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(ManifestError);
    return error as ManifestError;
  }
  throw new Error('expected the manifest to be refused');
}

describe('divio.yaml', () => {
  it('parses a complete manifest and fills defaults', () => {
    const m = parseManifest(valid);
    expect(m.web).toEqual({ port: 8000, command: 'node server.js', local_command: 'node --watch server.js', health_check: '/healthz' });
    expect(m.database).toEqual({ engine: 'postgres', version: 15 });
    expect(m.media).toEqual({ enabled: true, url: '/media/' });
    const minimal = parseManifest('web:\n  command: ./serve\n');
    expect(minimal.web.port).toBe(8000);
    expect(minimal.web.health_check).toBe('/healthz');
    expect(minimal.database).toBeUndefined();
  });

  it('names the file, line, field, what was found and what is allowed', () => {
    const error = problemsOf(valid.replace('port: 8000', 'port: eighty'));
    expect(error.problems).toEqual([{ field: 'web.port', line: 4, found: '"eighty" (text)', allowed: 'a number' }]);
    expect(error.message).toContain('divio.yaml:4: web.port: found "eighty" (text); allowed: a number');
  });

  it('reports out-of-range numbers and unsupported versions', () => {
    expect(problemsOf(valid.replace('port: 8000', 'port: 70000')).message).toMatch(/web\.port: found 70000 \(number\); allowed: a number of at most 65535/);
    const version = problemsOf(valid.replace('version: 15', 'version: 9'));
    expect(version.problems[0]).toMatchObject({ field: 'database.version', line: 12, found: '9 (number)' });
    expect(version.problems[0]!.allowed).toContain('15');
    expect(problemsOf(valid.replace('engine: postgres', 'engine: mysql')).problems[0]).toMatchObject({
      field: 'database.engine',
      found: '"mysql" (text)',
      allowed: '"postgres"',
    });
  });

  it('reports unknown keys instead of ignoring them, with the keys that are allowed', () => {
    const error = problemsOf(valid.replace('  health_check: /healthz', '  health_check: /healthz\n  helth: /x'));
    expect(error.problems).toEqual([
      { field: 'web.helth', line: 8, found: 'an unknown key', allowed: 'port, command, local_command, health_check' },
    ]);
    expect(problemsOf(`${valid}\nworkers: 3\n`).problems[0]).toMatchObject({ field: 'workers', found: 'an unknown key' });
  });

  it('reports a missing required field and a bad health-check path', () => {
    const missing = problemsOf('web:\n  port: 8000\n');
    expect(missing.problems[0]).toMatchObject({ field: 'web.command', found: 'nothing (the field is missing)', line: 2 });
    const path = problemsOf(valid.replace('health_check: /healthz', 'health_check: healthz'));
    expect(path.problems[0]).toMatchObject({ field: 'web.health_check', found: '"healthz" (text)' });
    expect(path.problems[0]!.allowed).toMatch(/starting with "\/"/);
  });

  it('reports every problem at once, and YAML syntax errors with their line', () => {
    const many = problemsOf(valid.replace('port: 8000', 'port: x').replace('enabled: true', 'enabled: yes please'));
    expect(many.problems.map((p) => p.field)).toEqual(['web.port', 'media.enabled']);
    const syntax = problemsOf('web:\n  command: [unclosed\n');
    expect(syntax.problems[0]!.found).toMatch(/invalid YAML/);
    expect(syntax.problems[0]!.line).toBeGreaterThan(0);
    expect(problemsOf('- a\n- b\n').problems[0]).toMatchObject({ field: '', found: 'a list', allowed: 'a mapping' });
  });
});
