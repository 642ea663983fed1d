/**
 * `pull db`, `push db` and backups against the shared test platform, with a real local database
 * (the express boilerplate's compose `db`) and the platform's real cluster: round trips keep every
 * row (counts and per-table checksums), pushes keep what they replace as backups within the
 * retention, backups restore, and every way a transfer can break — the CLI killed, the API
 * restarted, a damaged or truncated dump, a digest that does not match, a client that never
 * commits — leaves the target as it was and no scratch database behind.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { BIN, TEST_CONFIG_DIR, divio, json } from '../helpers/cli.js';
import { describeWithDocker } from '../helpers/docker.js';
import { createUser, request } from '../helpers/api.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

const TABLES = ['events', 'people', 'blobs'] as const;

/** The fixture: a large table (so transfers take long enough to interrupt), unicode text, bytea, a sequence, an index, a view. */
const FIXTURE_SQL = (rows: number) => `
DROP VIEW IF EXISTS busy_kinds; DROP TABLE IF EXISTS events, people, blobs;
CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, payload text, amount numeric, created timestamptz);
INSERT INTO events SELECT g, 'kind-' || (g % 17), md5(g::text) || repeat(md5((g * 7)::text), 3), g * 0.01,
  '2026-01-01'::timestamptz + g * interval '1 second' FROM generate_series(1, ${rows}) g;
CREATE INDEX events_kind ON events (kind, created);
CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
INSERT INTO people (name) VALUES ('Zoë'), ('Jürgen'), ('李小龍'), ('O''Brien'), ('emoji 🎉');
CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
INSERT INTO blobs SELECT g, decode(md5(g::text) || md5((g + 1)::text), 'hex') FROM generate_series(1, 1000) g;
CREATE VIEW busy_kinds AS SELECT kind, count(*) FROM events GROUP BY kind;
`;

const CHECKSUM_SQL = TABLES.map(
  (t) => `SELECT '${t}', count(*), md5(coalesce(string_agg(md5(x::text), '' ORDER BY x.id), '')) FROM ${t} x`,
).join(' UNION ALL ') + ` UNION ALL SELECT 'people_seq', last_value, '' FROM people_id_seq UNION ALL SELECT 'view', count(*), '' FROM busy_kinds ORDER BY 1`;

describeWithDocker('database transfers between local and the platform', () => {
  const platform = usePlatform();
  const slug = `dbx-${Math.random().toString(36).slice(2, 8)}`;
  let parent: string;
  let dir: string;
  let env: Record<string, string>;
  let token: string;
  const cli = (args: string[]) => divio(args, { cwd: dir, env, timeout: 600_000 });

  const localDb = async () => {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.compose.project=${slug}`, 'com.docker.compose.service=db'] } });
    if (!container) throw new Error('the local db container is not running');
    return container.Id;
  };
  const localSql = async (sql: string, database = 'app') =>
    (await execa('docker', ['exec', '-i', await localDb(), 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql })).stdout.trim();
  const clusterContainer = async () => {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-postgres`] } });
    if (!container) throw new Error('the platform cluster is not running');
    return container.Id;
  };
  const clusterSql = async (sql: string, database = 'postgres') =>
    (await execa('docker', ['exec', '-i', await clusterContainer(), 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql })).stdout.trim();
  const envDb = (environment: 'test' | 'live') => `${slug.replace(/-/g, '_')}_${environment}`;
  const scratchDatabases = () => clusterSql(`SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE 'divio\\_tx\\_%'`);
  /** Backup databases of the environment still on the cluster (an import's backup is named after its transfer; pruned ones until dropped). */
  const backupNames = (environment: 'test' | 'live') =>
    clusterSql(
      `SELECT coalesce(string_agg(d.datname, ',' ORDER BY d.datname), '') FROM pg_database d JOIN db_transfers t ON d.datname = 'divio_bk_' || t.id
         JOIN environments e ON e.id = t.environment_id WHERE e.db_name = '${envDb(environment)}'`,
      'divio_platform',
    ).then((names) => names.split(',').filter(Boolean));
  const backupDatabases = async (environment: 'test' | 'live') => String((await backupNames(environment)).length);
  const localTempDatabases = () => localSql(`SELECT count(*) FROM pg_database WHERE datname LIKE 'app\\_\\_divio\\_%'`, 'postgres');
  /** The database a pull replaced is dropped in the background, so "none left" may take a moment. */
  const noLocalTempDatabases = () => waitFor(async () => (await localTempDatabases()) === '0', 'no temporary local database', 20_000);
  const apiPath = (rest: string) => `/v1/apps/${slug}/environments/${rest}`;

  let localChecksums: string;

  beforeAll(async () => {
    const user = await createUser(platform().endpoint, await operatorToken(), 'mover');
    token = user.token;
    env = { DIVIO_ENDPOINT: platform().endpoint, DIVIO_TOKEN: user.token };
    parent = await mkdtemp(join(tmpdir(), 'divio-dbx-'));
    dir = join(parent, slug);
    const created = await divio(['project', 'create', slug], { cwd: parent, env });
    expect(created.exitCode, created.stderr).toBe(0);
    // pull starts the local database by itself; the fixture needs it first.
    const started = await cli(['project', 'pull', 'db']);
    expect(started.exitCode, started.stderr).toBe(0);
    await localSql(FIXTURE_SQL(400_000));
    localChecksums = await localSql(CHECKSUM_SQL);
  });

  afterAll(async () => {
    if (dir) await cli(['project', 'down', '--volumes']).catch(() => undefined);
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('push db needs confirmation without a terminal, and changes nothing without it', async () => {
    const before = await clusterSql(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`, envDb('test'));
    const refused = await cli(['project', 'push', 'db', 'test']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/needs confirmation.*--yes/s);
    expect(await clusterSql(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`, envDb('test'))).toBe(before);
    expect(await backupDatabases('test')).toBe('0');
  });

  it('push db then pull db round-trips every row; the replaced database is kept as a backup', async () => {
    const pushed = await cli(['project', 'push', 'db', 'test', '--yes', '--json']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const push = json(pushed);
    expect(push).toMatchObject({ app: slug, environment: 'test', direction: 'push', verified: true, compression: 1 });
    expect(push.bytes).toBeGreaterThan(10_000_000);
    expect(push.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(push.backup).toMatchObject({ environment: 'test', reason: 'import' });
    expect(await clusterSql(CHECKSUM_SQL, envDb('test'))).toBe(localChecksums);
    // The pushed database belongs to the environment's role, like the one it replaced.
    expect(await clusterSql(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '${envDb('test')}'`)).toBe(envDb('test'));
    expect(await clusterSql(`SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'`, envDb('test'))).toBe(envDb('test'));

    await localSql('DROP VIEW busy_kinds; DROP TABLE events, people, blobs; CREATE TABLE scribble (x int);');
    const pulled = await cli(['project', 'pull', 'db', 'test', '--json']);
    expect(pulled.exitCode, pulled.stderr).toBe(0);
    const pull = json(pulled);
    expect(pull).toMatchObject({ app: slug, environment: 'test', direction: 'pull', verified: true });
    expect(pull.bytes).toBeGreaterThan(10_000_000);
    expect(await localSql(CHECKSUM_SQL)).toBe(localChecksums);
    expect(await localSql(`SELECT count(*) FROM pg_tables WHERE tablename = 'scribble'`)).toBe('0');
    await noLocalTempDatabases();
    expect(await scratchDatabases()).toBe('');

    const transfer = await request(platform().endpoint, apiPath(`test/database/transfers/${pull.transfer}`), { token });
    expect(transfer.body).toMatchObject({ kind: 'dump', state: 'completed', bytes: pull.bytes, sha256: pull.sha256 });
  });

  it('isolation: roles reach only their own database; backups and scratch databases take no other role', async () => {
    const test = envDb('test');
    const live = envDb('live');
    expect(await clusterSql(`SELECT has_database_privilege('${test}', '${live}', 'CONNECT')`)).toBe('f');
    expect(await clusterSql(`SELECT has_database_privilege('${live}', '${test}', 'CONNECT')`)).toBe('f');
    const backups = await backupNames('test');
    expect(backups.length).toBeGreaterThan(0);
    for (const name of backups) {
      // Nobody can connect to a backup (it is only ever copied); it is the admin's, so its environment's role
      // cannot open it again, and neither environment has a grant at all.
      expect(await clusterSql(`SELECT pg_get_userbyid(datdba) || ':' || datallowconn::int FROM pg_database WHERE datname = '${name}'`)).toBe('postgres:0');
      expect(await clusterSql(`SELECT has_database_privilege('${live}', '${name}', 'CONNECT')`)).toBe('f');
      expect(await clusterSql(`SELECT has_database_privilege('${test}', '${name}', 'CONNECT')`)).toBe('f');
    }
    // A real connection as live's role to test's database is refused by the server.
    const denied = await execa('docker', ['exec', await clusterContainer(), 'psql', '-X', '-h', '127.0.0.1', '-U', live, '-d', test, '-c', 'SELECT 1'], {
      reject: false,
      env: { PGPASSWORD: 'wrong-anyway' },
    });
    expect(denied.exitCode).not.toBe(0);
  });

  it('backups: each push keeps the replaced database, none younger than 7 days is pruned, and a backup restores', async () => {
    // Mark each generation so restores can be told apart.
    const generations: string[] = [];
    for (let i = 1; i <= 3; i++) {
      await localSql(`DROP TABLE IF EXISTS generation; CREATE TABLE generation (n int); INSERT INTO generation VALUES (${i});`);
      const pushed = await cli(['project', 'push', 'db', 'test', '--yes', '--json']);
      expect(pushed.exitCode, pushed.stderr).toBe(0);
      generations.push(json(pushed).backup.id);
    }
    const listed = await cli(['project', 'backups', 'list', 'test', '--json']);
    expect(listed.exitCode, listed.stderr).toBe(0);
    const listing = json(listed);
    expect(listing.keep).toBe(3);
    expect(listing.retention).toMatchObject({ keep: 3, keepDays: 7, max: 10 });
    // The round trip's push made one before these three: all are younger than 7 days, so all are kept.
    expect(listing.backups.map((b: { id: string }) => b.id).slice(0, 3)).toEqual([...generations].reverse());
    expect(listing.backups).toHaveLength(4);
    expect(await backupDatabases('test')).toBe('4');
    const table = await cli(['project', 'backups', 'list', 'test']);
    expect(table.stdout).toMatch(/^ID\s+TAKEN\s+REASON\s+SIZE/m);

    // The newest backup holds generation 2 (generation 3 replaced it).
    const newest = listing.backups[0].id;
    const refused = await cli(['project', 'backups', 'restore', 'test', newest]);
    expect(refused.exitCode).toBe(2);
    const restored = await cli(['project', 'backups', 'restore', 'test', newest, '--yes', '--json']);
    expect(restored.exitCode, restored.stderr).toBe(0);
    const result = json(restored);
    expect(result.restored).toBe(newest);
    expect(result.backup.reason).toBe('restore');
    expect(result.pruned).toEqual([]);
    expect(await clusterSql('SELECT n FROM generation', envDb('test'))).toBe('2');
    expect(await backupDatabases('test')).toBe('5');
    const bad = await cli(['project', 'backups', 'restore', 'test', 'not-an-id', '--yes']);
    expect(bad.exitCode).toBe(4);
    const missing = await cli(['project', 'backups', 'restore', 'test', '0123456789abcdef', '--yes']);
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stderr).toMatch(/Backup 0123456789abcdef not found/);
  });

  it('killing the CLI in the middle of a pull leaves the local database as it was, and the next pull cleans up', async () => {
    await localSql('DROP TABLE IF EXISTS marker; CREATE TABLE marker (v text); INSERT INTO marker VALUES (\'local\');');
    const child = execa('node', [BIN, 'project', 'pull', 'db', 'test'], { cwd: dir, env: { ...env, DIVIO_CONFIG_DIR: TEST_CONFIG_DIR, CI: 'true' }, reject: false });
    await waitFor(async () => Number(await localTempDatabases()) > 0, 'the pull to start restoring');
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGKILL');
    await child;
    expect(await localSql('SELECT v FROM marker')).toBe('local');
    // The platform noticed the client went away.
    await waitFor(async () => {
      const transfers = await clusterSql(`SELECT count(*) FROM db_transfers WHERE kind = 'dump' AND state = 'running'`, 'divio_platform');
      return transfers === '0';
    }, 'the platform to end the dump');
    const again = await cli(['project', 'pull', 'db', 'test', '--json']);
    expect(again.exitCode, again.stderr).toBe(0);
    await noLocalTempDatabases();
    expect(await localSql(`SELECT count(*) FROM pg_tables WHERE tablename = 'marker'`)).toBe('0');
  });

  it('killing the CLI in the middle of a push leaves the environment as it was and no scratch database', async () => {
    const before = await clusterSql(CHECKSUM_SQL, envDb('test'));
    const backupsBefore = await backupDatabases('test');
    const child = execa('node', [BIN, 'project', 'push', 'db', 'test', '--yes'], { cwd: dir, env: { ...env, DIVIO_CONFIG_DIR: TEST_CONFIG_DIR, CI: 'true' }, reject: false });
    await waitFor(async () => (await scratchDatabases()) !== '', 'the push to start restoring on the platform');
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGKILL');
    await child;
    await waitFor(async () => (await scratchDatabases()) === '', 'the platform to drop the scratch database');
    expect(await clusterSql(CHECKSUM_SQL, envDb('test'))).toBe(before);
    expect(await backupDatabases('test')).toBe(backupsBefore);
  });

  it('an API restart in the middle of a push fails it, leaves the environment as it was, and drops the scratch database', async () => {
    const before = await clusterSql(CHECKSUM_SQL, envDb('test'));
    const push = cli(['project', 'push', 'db', 'test', '--yes']);
    await waitFor(async () => (await scratchDatabases()) !== '', 'the push to start restoring on the platform');
    await execa('docker', ['kill', '--signal', 'KILL', (await apiContainer(platform().name))!]);
    const result = await push;
    expect(result.exitCode).not.toBe(0);
    await waitFor(async () => (await request(platform().endpoint, '/v1/health').catch(() => undefined))?.status === 200, 'the API to come back', 120_000);
    await waitFor(async () => (await scratchDatabases()) === '', 'the restarted API to drop the scratch database');
    expect(await clusterSql(CHECKSUM_SQL, envDb('test'))).toBe(before);
    const failed = await clusterSql(`SELECT error FROM db_transfers WHERE kind = 'import' ORDER BY created_at DESC LIMIT 1`, 'divio_platform');
    expect(failed).toMatch(/platform restarted|upload ended/);
  });

  it('a connection cut in the middle of a pull (the router killed) leaves the local database as it was', async () => {
    await localSql("DROP TABLE IF EXISTS marker; CREATE TABLE marker (v text); INSERT INTO marker VALUES ('before the cut');");
    const pull = cli(['project', 'pull', 'db', 'test']);
    await waitFor(async () => Number(await localTempDatabases()) > 0, 'the pull to start restoring');
    const [router] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-router`] } });
    await execa('docker', ['kill', '--signal', 'KILL', router!.Id]);
    const result = await pull;
    expect(result.exitCode).not.toBe(0);
    expect(await localSql('SELECT v FROM marker')).toBe('before the cut');
    await waitFor(async () => (await request(platform().endpoint, '/v1/health').catch(() => undefined))?.status === 200, 'the router to come back', 120_000);
    await waitFor(async () => (await clusterSql(`SELECT count(*) FROM db_transfers WHERE kind = 'dump' AND state = 'running'`, 'divio_platform')) === '0', 'the platform to end the dump');
    expect(await clusterSql(`SELECT error FROM db_transfers WHERE kind = 'dump' ORDER BY created_at DESC LIMIT 1`, 'divio_platform')).toMatch(/went away/);
  });

  it('a damaged dump, a digest that does not match, and an import never committed all change nothing', async () => {
    const before = await clusterSql(CHECKSUM_SQL, envDb('test'));
    // A damaged upload: garbage after a custom-format header.
    const damaged = await rawUpload(platform().port, apiPath('test/database/imports'), token, Buffer.concat([Buffer.from('PGDMP'), randomBytes(4096)]));
    expect(damaged.status).toBe(422);
    expect(JSON.parse(damaged.body).error.code).toBe('restore_failed');
    expect(await scratchDatabases()).toBe('');

    // A good dump whose commit claims another digest.
    const dump = (await execa('docker', ['exec', await localDb(), 'pg_dump', '-Fc', '-U', 'postgres', '-d', 'app', '-t', 'people'], { encoding: 'buffer' })).stdout as Uint8Array;
    const uploaded = await rawUpload(platform().port, apiPath('test/database/imports'), token, Buffer.from(dump));
    expect(uploaded.status, uploaded.body).toBe(201);
    const transfer = JSON.parse(uploaded.body);
    expect(transfer).toMatchObject({ state: 'restored', bytes: dump.length });
    const mismatch = await request(platform().endpoint, apiPath(`test/database/imports/${transfer.id}/commit`), {
      method: 'POST',
      token,
      body: { sha256: '0'.repeat(64), bytes: dump.length },
    });
    expect(mismatch.status).toBe(409);
    expect(mismatch.body.error.code).toBe('digest_mismatch');
    expect(await scratchDatabases()).toBe('');

    // Uploaded and never committed: the next import sweeps it.
    const abandoned = await rawUpload(platform().port, apiPath('test/database/imports'), token, Buffer.from(dump));
    expect(abandoned.status).toBe(201);
    expect(await scratchDatabases()).not.toBe('');
    const next = await rawUpload(platform().port, apiPath('test/database/imports'), token, Buffer.concat([Buffer.from('PGDMP'), randomBytes(64)]));
    expect(next.status).toBe(422);
    expect(await scratchDatabases()).toBe('');
    const swept = await request(platform().endpoint, apiPath(`test/database/transfers/${JSON.parse(abandoned.body).id}`), { token });
    expect(swept.body).toMatchObject({ state: 'failed', error: expect.stringMatching(/abandoned/) });

    expect(await clusterSql(CHECKSUM_SQL, envDb('test'))).toBe(before);
  });

  it('a second import into the same environment while one streams is refused', async () => {
    const body = new PassThrough();
    const first = rawUpload(platform().port, apiPath('test/database/imports'), token, body);
    body.write(Buffer.from('PGDMP'));
    await waitFor(async () => (await scratchDatabases()) !== '', 'the first import to start');
    const second = await rawUpload(platform().port, apiPath('test/database/imports'), token, Buffer.from('PGDMP'));
    expect(second.status).toBe(409);
    expect(JSON.parse(second.body).error.message).toMatch(/Another database import, restore or backup of test is in progress/);
    body.end(randomBytes(100));
    expect((await first).status).toBe(422);
  });

  it("deleting the app drops every backup, and its environments' databases leave their names (kept, closed, for the grace period)", async () => {
    expect(Number(await backupDatabases('test'))).toBeGreaterThan(0);
    const backups = [...(await backupNames('test')), ...(await backupNames('live'))];
    const owned = (await clusterSql(`SELECT string_agg(quote_literal(datname), ',') FROM pg_database WHERE pg_get_userbyid(datdba) IN ('${envDb('test')}', '${envDb('live')}')`)).trim()
      + backups.map((name) => `,'${name}'`).join('');
    const deleted = await request(platform().endpoint, `/v1/apps/${slug}`, { method: 'DELETE', token });
    expect(deleted.status).toBe(200);
    for (const environment of ['test', 'live'] as const) {
      expect(await clusterSql(`SELECT count(*) FROM pg_database WHERE datname = '${envDb(environment)}'`)).toBe('0');
      expect(await clusterSql(`SELECT count(*) FROM pg_roles WHERE rolname = '${envDb(environment)}'`)).toBe('0');
    }
    expect(await clusterSql(`SELECT count(*) FROM pg_database WHERE datname IN (${owned})`)).toBe('0');
    expect(await clusterSql(`SELECT count(*) FROM db_backups b LEFT JOIN environments e ON e.id = b.environment_id WHERE e.id IS NULL`, 'divio_platform')).toBe('0');
  });
});

async function apiContainer(name: string): Promise<string | undefined> {
  const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${name}-api`] } });
  return container?.Id;
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** POST a body (a buffer, or a stream kept open by the caller) as application/octet-stream. */
function rawUpload(port: number, path: string, token: string, body: Buffer | PassThrough): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    if (Buffer.isBuffer(body)) req.end(body);
    else body.pipe(req);
  });
}
