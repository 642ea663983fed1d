/** What every command shares: errors that say what failed and what to do, exit codes, --json, NO_COLOR. */
import { describe, expect, it } from 'vitest';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { divio, json } from '../helpers/cli.js';
import { colorWanted, createIO } from '../../src/core/io.js';

describe('errors', () => {
  it('outside a project: what failed, what to do, exit code 3', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'divio-noproj-'));
    const result = await divio(['project', 'status'], { cwd: dir });
    expect(result.exitCode).toBe(3);
    expect(result.stderr).toMatch(/^Error: .* is not inside a divio project/m);
    expect(result.stderr).toMatch(/→ cd into a project directory, pass --app SLUG/);
    expect(result.stdout).toBe('');
  });

  it('with --json the error is JSON on stdout', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'divio-noproj-'));
    const result = await divio(['project', 'status', '--json'], { cwd: dir });
    expect(result.exitCode).toBe(3);
    expect(json(result)).toEqual({ error: { message: expect.stringMatching(/not inside a divio project/), hint: expect.any(String), exitCode: 3 } });
  });

  it('--app with an unknown slug or an invalid one', async () => {
    const unknown = await divio(['project', 'status', '--app', 'never-seen']);
    expect(unknown.exitCode).toBe(3);
    expect(unknown.stderr).toMatch(/no local checkout of app "never-seen"/);
    const invalid = await divio(['project', 'status', '--app', 'Not_A_Slug']);
    expect(invalid.exitCode).toBe(4);
  });

  it('a broken .divio/config.json names the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'divio-badcfg-'));
    await mkdir(join(dir, '.divio'));
    await writeFile(join(dir, '.divio/config.json'), '{"app": "UPPER"}');
    const result = await divio(['project', 'status'], { cwd: dir });
    expect(result.exitCode).toBe(4);
    expect(result.stderr).toMatch(/config\.json is not valid: app: a slug/);
  });

  it('without credentials: whoami says to log in (exit 3), login without a terminal asks for --token (exit 2), logout is a no-op', async () => {
    const config = await mkdtemp(join(tmpdir(), 'divio-nologin-'));
    const env = { DIVIO_CONFIG_DIR: config, DIVIO_TOKEN: undefined, DIVIO_ENDPOINT: undefined };
    const who = await divio(['whoami'], { env });
    expect(who.exitCode).toBe(3);
    expect(who.stderr).toMatch(/not logged in[\s\S]*divio login --endpoint URL/);
    const login = await divio(['login', '--endpoint', 'http://127.0.0.1:9'], { env });
    expect(login.exitCode).toBe(2);
    expect(login.stderr).toMatch(/no terminal to ask[\s\S]*--token/);
    const logout = await divio(['logout'], { env });
    expect(logout.exitCode).toBe(0);
    expect(logout.stdout).toMatch(/Not logged in/);
    const listed = await divio(['project', 'list', '--json'], { env });
    expect(listed.exitCode).toBe(3);
    expect(json(listed).error.hint).toMatch(/divio login/);
  });

  it('the app topic is an alias of project', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'divio-alias-'));
    const result = await divio(['app', 'status', '--json'], { cwd: dir });
    expect(json(result).error.message).toMatch(/not inside a divio project/);
  });
});

describe('terminal output', () => {
  it('colour only on a TTY, never with NO_COLOR', () => {
    expect(colorWanted({ isTTY: true }, {})).toBe(true);
    expect(colorWanted({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(colorWanted({ isTTY: false }, {})).toBe(false);
    expect(colorWanted({ isTTY: false }, { FORCE_COLOR: '1' })).toBe(true);
  });

  it('plain start and end lines off a TTY; nothing with quiet (--json)', async () => {
    const stderr = new PassThrough();
    const lines: string[] = [];
    stderr.on('data', (d: Buffer) => lines.push(d.toString()));
    const io = createIO({ stderr, stdout: new PassThrough(), env: {} });
    expect(io.fancy).toBe(false);
    expect(await io.task('Working', async () => 42)).toBe(42);
    expect(lines.join('')).toMatch(/^Working\.\.\.\nWorking: done \(\d+\.\ds\)\n$/);
    const quietErr = new PassThrough();
    let quietOut = '';
    quietErr.on('data', (d: Buffer) => (quietOut += d.toString()));
    const quiet = createIO({ stderr: quietErr, stdout: new PassThrough(), env: {}, quiet: true });
    await quiet.task('Working', async () => 1);
    quiet.info('status');
    expect(quietOut).toBe('');
  });

  it('doctor --json lists every check with a fix for failures', async () => {
    const result = await divio(['doctor', '--json']);
    const report = json(result);
    expect(report.checks.map((c: { name: string }) => c.name)).toEqual(
      expect.arrayContaining(['Docker engine', 'Compose v2 (docker compose)', 'Compose v1 (docker-compose)', 'git', 'Free ports']),
    );
    for (const check of report.checks) if (!check.ok && check.required) expect(check.fix).toBeTruthy();
    expect(result.exitCode).toBe(report.ok ? 0 : 1);
  });

  it('doctor fails with a fix when the Docker engine does not answer', async () => {
    const result = await divio(['doctor'], { env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/✗ Docker engine: not answering at unix:\/\/\/nonexistent\/docker\.sock/);
    expect(result.stdout).toMatch(/fix: Start Docker/);
  });
});
