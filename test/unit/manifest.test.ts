import { describe, expect, it } from 'vitest';
import { ManifestError, parseManifest } from '../../src/shared/manifest-parse.js';
import { cronScheduleProblem, workerProcesses } from '../../src/shared/manifest.js';

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

  describe('processes, cron and services', () => {
    const full = `${valid}processes:
  worker:
    command: node worker.js
    local_command: node --watch worker.js
  mailer:
    command: node mail.js
cron:
  - name: cleanup
    schedule: "*/15 * * * *"
    command: node cleanup.js
  - name: report
    schedule: 30 6 1-7,15 jan-mar,dec mon-fri
    command: node report.js
services:
  redis:
    version: 7
`;

    it('parses worker processes, cron entries and redis', () => {
      const m = parseManifest(full);
      expect(workerProcesses(m)).toEqual([
        ['worker', { command: 'node worker.js', local_command: 'node --watch worker.js' }],
        ['mailer', { command: 'node mail.js' }],
      ]);
      expect(m.cron).toEqual([
        { name: 'cleanup', schedule: '*/15 * * * *', command: 'node cleanup.js' },
        { name: 'report', schedule: '30 6 1-7,15 jan-mar,dec mon-fri', command: 'node report.js' },
      ]);
      expect(m.services).toEqual({ redis: { version: 7 } });
      expect(parseManifest('web:\n  command: x\nservices:\n  redis: {}\n').services?.redis).toEqual({ version: 7 });
      expect(workerProcesses(parseManifest(valid))).toEqual([]);
    });

    it('refuses process names that are not DNS labels or that divio uses, at the name\'s line', () => {
      const bad = problemsOf(full.replace('  mailer:', '  Mail_er:'));
      expect(bad.problems).toEqual([
        { field: 'processes.Mail_er', line: 19, found: 'the process name "Mail_er"', allowed: expect.stringMatching(/lowercase letters, digits and "-"/) },
      ]);
      for (const reserved of ['web', 'db', 'redis', 'release']) {
        const error = problemsOf(full.replace('  mailer:', `  ${reserved}:`));
        expect(error.problems[0]).toMatchObject({ field: `processes.${reserved}`, line: 19, found: `the process name "${reserved}"` });
        expect(error.problems[0]!.allowed).toBe('a name other than web, db, redis, release (divio uses those)');
      }
      expect(problemsOf(full.replace('  mailer:', '  x-:')).problems[0]!.field).toBe('processes.x-');
      expect(problemsOf(full.replace('  mailer:', `  ${'a'.repeat(25)}:`)).problems[0]!.found).toContain('a'.repeat(25));
      expect(parseManifest(full.replace('  mailer:', `  ${'a'.repeat(24)}:`)).processes).toHaveProperty('a'.repeat(24));
    });

    it('refuses more than 8 processes, a process without a command and unknown process keys', () => {
      const nine = Array.from({ length: 9 }, (_, i) => `  w${i}:\n    command: run ${i}\n`).join('');
      expect(problemsOf(`${valid}processes:\n${nine}`).problems).toEqual([
        { field: 'processes', line: 15, found: '9 processes', allowed: 'at most 8 worker processes' },
      ]);
      expect(problemsOf(`${valid}processes:\n  w:\n    local_command: x\n`).problems[0]).toMatchObject({
        field: 'processes.w.command',
        found: 'nothing (the field is missing)',
      });
      expect(problemsOf(`${valid}processes:\n  w:\n    command: x\n    replicas: 2\n`).problems[0]).toMatchObject({
        field: 'processes.w.replicas',
        line: 18,
        found: 'an unknown key',
        allowed: 'command, local_command',
      });
      expect(problemsOf(`${valid}processes:\n  - worker\n`).problems[0]).toMatchObject({ field: 'processes', found: 'a list', allowed: 'a mapping' });
      expect(problemsOf(`${valid}processes:\n  w:\n    command: "  "\n`).problems[0]).toMatchObject({ field: 'processes.w.command', allowed: 'a non-empty text' });
    });

    it('validates cron schedules field by field', () => {
      for (const ok of ['* * * * *', '0 0 * * 0', '59 23 31 12 7', '*/5 0-6/2 1,15 * sun', '0 9 * JAN-Jun MON-FRI', '0 0 1-31/10 feb,apr sat']) {
        expect(cronScheduleProblem(ok), ok).toBeUndefined();
      }
      const cases: [string, RegExp][] = [
        ['* * * *', /5 fields .* found 4/],
        ['* * * * * *', /found 6/],
        ['@daily', /found 1/],
        ['60 * * * *', /minute "60" is outside 0-59/],
        ['* 24 * * *', /hour "24" is outside 0-23/],
        ['* * 0 * *', /day of month "0" is outside 1-31/],
        ['* * * 13 *', /month "13" is outside 1-12 or jan-dec/],
        ['* * * * 8', /day of week "8" is outside 0-7 or sun-sat/],
        ['* * * foo *', /month "foo"/],
        ['* * * * mon-jan', /day of week "mon-jan"/],
        ['*/0 * * * *', /minute "\*\/0" has a step that is not a whole number/],
        ['*/x * * * *', /step/],
        ['1/5 * * * *', /step without a range/],
        ['30-10 * * * *', /range "30-10" runs backwards/],
        ['1-2-3 * * * *', /not a value or a range/],
        ['1,,2 * * * *', /minute ""/],
        ['-1 * * * *', /minute "-1"/],
      ];
      for (const [schedule, message] of cases) expect(cronScheduleProblem(schedule), schedule).toMatch(message);
    });

    it('reports a bad cron entry with its line, field, what was found and what is allowed', () => {
      const error = problemsOf(full.replace('"*/15 * * * *"', '"*/15 * * *"'));
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatchObject({ field: 'cron.0.schedule', line: 23, found: '"*/15 * * *" (text)' });
      expect(error.problems[0]!.allowed).toMatch(/^a 5-field cron schedule .*: 5 fields \(minute hour day-of-month month day-of-week\), found 4$/);
      expect(error.message).toContain('divio.yaml:23: cron.0.schedule: found "*/15 * * *" (text); allowed: a 5-field cron schedule');
      expect(problemsOf(full.replace('name: report', 'name: cleanup')).problems).toEqual([
        { field: 'cron.1.name', line: 25, found: 'a second entry named "cleanup"', allowed: 'a name no other cron entry has' },
      ]);
      expect(problemsOf(full.replace('name: report', 'name: Report!')).problems[0]).toMatchObject({ field: 'cron.1.name', found: '"Report!" (text)' });
      expect(problemsOf(full.replace('    command: node report.js\n', '')).problems[0]).toMatchObject({ field: 'cron.1.command', found: 'nothing (the field is missing)' });
      expect(problemsOf(`${valid}cron:\n  cleanup: "* * * * *"\n`).problems[0]).toMatchObject({ field: 'cron', found: 'a mapping', allowed: 'a list' });
      const many = Array.from({ length: 21 }, (_, i) => `  - name: j${i}\n    schedule: "* * * * *"\n    command: x\n`).join('');
      expect(problemsOf(`${valid}cron:\n${many}`).problems[0]).toMatchObject({ field: 'cron', found: '21 entries', allowed: 'at most 20 cron entries' });
    });

    it('offers only redis, only in the versions the offline images have', () => {
      expect(problemsOf(full.replace('version: 7\n', 'version: 6\n')).problems).toEqual([
        { field: 'services.redis.version', line: 30, found: '6 (number)', allowed: '7' },
      ]);
      expect(problemsOf(full.replace('version: 7\n', 'version: "7"\n')).problems[0]).toMatchObject({ field: 'services.redis.version', found: '"7" (text)' });
      expect(problemsOf(full.replace('  redis:', '  memcached:')).problems[0]).toMatchObject({
        field: 'services.memcached',
        line: 29,
        found: 'an unknown key',
        allowed: 'redis',
      });
      expect(problemsOf(full.replace('version: 7', 'version: 7\n    password: x')).problems[0]).toMatchObject({ field: 'services.redis.password', allowed: 'version' });
    });
  });
});
