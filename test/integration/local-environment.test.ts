/**
 * The local environment through the real CLI and Docker: up (health check, URL, free port), status
 * --json, exec exit codes, --live-config, user edits to docker-compose.yml, logs, down; with Compose
 * v2 and v1.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { probeHttp } from '../../src/core/http-probe.js';
import { divio, json } from '../helpers/cli.js';
import { composeVersions, describeWithDocker, dockerRequired } from '../helpers/docker.js';
import { minimalProject, type TestProject } from '../helpers/projects.js';

const versions = composeVersions();
if (dockerRequired) {
  it('has both Compose versions installed', () => {
    expect(versions.map((v) => v.name)).toEqual(['v2', 'v1']);
  });
}

async function health(url: string) {
  const { hostname, port } = new URL(url);
  const result = await probeHttp(Number(port), '/healthz', `${hostname}:${port}`);
  return { status: result.status, body: JSON.parse(result.body) };
}

for (const compose of versions) {
  describeWithDocker(`local environment with Compose ${compose.name}`, () => {
    let project: TestProject;
    const env = { DIVIO_COMPOSE: compose.env };
    beforeAll(async () => {
      project = await minimalProject(`local-${compose.name}`, env);
    });
    afterAll(async () => {
      await project?.destroy();
    });

    it('up builds, runs the release command, waits for /healthz and prints the URL', async () => {
      const result = await divio(['project', 'up', '--json'], { cwd: project.dir, env });
      expect(result.exitCode, String(result.stderr)).toBe(0);
      const up = json(result);
      expect(up.app).toBe(project.slug);
      expect(up.url).toMatch(new RegExp(`^http://${project.slug}\\.localhost:\\d+$`));
      expect(up.health).toMatchObject({ status: 'ok', stage: 'local', debug: 'true', mode: 'development', commandPort: '8000' });
      const h = await health(up.url);
      expect(h.status).toBe(200);
      expect(h.body).toMatchObject({
        stage: 'local',
        hasDatabaseUrl: true,
        storage: 'file:///data/media/?url=/media/',
        domain: `${project.slug}.localhost`,
        siteUrl: up.url,
      });
      const marker = await divio(['project', 'exec', 'web', '--', 'cat', '/tmp/release-marker'], { cwd: project.dir, env });
      expect(marker.stdout.trim()).toBe('release ran');
    });

    it('status --json has the SPEC shape', async () => {
      const status = json(await divio(['project', 'status', '--json'], { cwd: project.dir, env }));
      expect(status).toMatchObject({ app: project.slug, endpoint: null });
      expect(status.environments).toHaveLength(1);
      const local = status.environments[0];
      expect(local).toMatchObject({ name: 'local', state: 'running' });
      expect(local.url).toMatch(/^http:\/\/.+\.localhost:\d+$/);
      expect(local.services.map((s: { name: string }) => s.name)).toEqual(['db', 'web']);
      expect(local.database.port).toBeGreaterThan(0);
      expect((await health(local.url)).status).toBe(200);
    });

    it('exec passes exit codes, stdin and output through', async () => {
      const seven = await divio(['project', 'exec', 'web', '--', 'sh', '-c', 'exit 7'], { cwd: project.dir, env });
      expect(seven.exitCode).toBe(7);
      const ok = await divio(['project', 'exec', 'web', '--', 'node', '-e', 'process.stdin.pipe(process.stdout)'], { cwd: project.dir, env, input: 'piped text' });
      expect(ok.exitCode).toBe(0);
      expect(ok.stdout).toBe('piped text');
      const db = await divio(['project', 'exec', 'db', '--', 'psql', '-U', 'postgres', '-d', 'app', '-Atc', 'select 40+2'], { cwd: project.dir, env });
      expect(db.stdout.trim()).toBe('42');
      const missing = await divio(['project', 'exec', 'nope', '--', 'true'], { cwd: project.dir, env });
      expect(missing.exitCode).not.toBe(0);
      expect(missing.stderr).toMatch(/no service "nope"/);
      const noCommand = await divio(['project', 'exec', 'web'], { cwd: project.dir, env });
      expect(noCommand.exitCode).toBe(2);
      expect(noCommand.stderr).toMatch(/no command given/);
    });

    it('--live-config runs the production command with DEBUG off, and back', async () => {
      const live = json(await divio(['project', 'up', '--live-config', '--json'], { cwd: project.dir, env }));
      expect(live.health).toMatchObject({ stage: 'local', debug: 'false', mode: 'production', commandPort: '8000' });
      const back = json(await divio(['project', 'up', '--json'], { cwd: project.dir, env }));
      expect(back.health).toMatchObject({ debug: 'true', mode: 'development' });
      expect(back.port).toBe(live.port);
    });

    it('keeps a docker-compose.yml the user edited and says what to do', async () => {
      const file = join(project.dir, 'docker-compose.yml');
      const original = await readFile(file, 'utf8');
      const edited = original.replace('      STAGE: local', '      STAGE: local\n      EXTRA_SETTING: "from-user"');
      await writeFile(file, edited);
      await writeFile(join(project.dir, 'divio.yaml'), (await readFile(join(project.dir, 'divio.yaml'), 'utf8')).replace('health_check: /healthz', 'health_check: /healthz\n'));
      const result = await divio(['project', 'up'], { cwd: project.dir, env });
      expect(result.exitCode, String(result.stderr)).toBe(0);
      expect(await readFile(file, 'utf8')).toBe(edited);
      const status = json(await divio(['project', 'status', '--json'], { cwd: project.dir, env }));
      expect((await health(status.environments[0].url)).body.extra).toBe('from-user');
      await writeFile(file, original);
    });

    it('reports an invalid divio.yaml with file, field and allowed values', async () => {
      const path = join(project.dir, 'divio.yaml');
      const good = await readFile(path, 'utf8');
      await writeFile(path, good.replace('port: 8000', 'port: "many"').replace('health_check:', 'healthcheck:'));
      const result = await divio(['project', 'up'], { cwd: project.dir, env });
      await writeFile(path, good);
      expect(result.exitCode).toBe(4);
      expect(result.stderr).toMatch(/divio\.yaml:2: web\.port: found "many" \(text\); allowed: a number/);
      expect(result.stderr).toMatch(/web\.healthcheck: found an unknown key; allowed: port, command, local_command, health_check/);
    });

    it('logs shows the services\' output', async () => {
      const logs = await divio(['project', 'logs', 'db', '--tail', '50'], { cwd: project.dir, env });
      expect(logs.exitCode).toBe(0);
      expect(logs.stdout + logs.stderr).toMatch(/database system is ready to accept connections/);
    });

    it('down stops everything and keeps the database unless --volumes', async () => {
      await divio(['project', 'exec', 'db', '--', 'psql', '-U', 'postgres', '-d', 'app', '-c', 'create table kept (x int); insert into kept values (1)'], { cwd: project.dir, env });
      expect((await divio(['project', 'down'], { cwd: project.dir, env })).exitCode).toBe(0);
      const stopped = json(await divio(['project', 'status', '--json'], { cwd: project.dir, env }));
      expect(stopped.environments[0]).toMatchObject({ state: 'stopped', url: null });
      expect((await divio(['project', 'up'], { cwd: project.dir, env })).exitCode).toBe(0);
      const kept = await divio(['project', 'exec', 'db', '--', 'psql', '-U', 'postgres', '-d', 'app', '-Atc', 'select count(*) from kept'], { cwd: project.dir, env });
      expect(kept.stdout.trim()).toBe('1');
      expect((await divio(['project', 'down', '--volumes'], { cwd: project.dir, env })).exitCode).toBe(0);
    });
  });
}

describeWithDocker('two projects side by side', () => {
  const projects: TestProject[] = [];
  afterAll(async () => {
    await Promise.all(projects.map((p) => p.destroy()));
  });
  it('get different free ports and both answer', async () => {
    projects.push(await minimalProject('side-a'), await minimalProject('side-b'));
    const urls: string[] = [];
    for (const p of projects) {
      const result = await divio(['project', 'up', '--json'], { cwd: p.dir });
      expect(result.exitCode, String(result.stderr)).toBe(0);
      urls.push(json(result).url);
    }
    expect(new URL(urls[0]!).port).not.toBe(new URL(urls[1]!).port);
    for (const url of urls) expect((await health(url)).status).toBe(200);
  });
});
