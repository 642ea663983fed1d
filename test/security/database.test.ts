/**
 * The database tenant boundary, attacked on the shared test platform's real cluster:
 * - dumps pushed to one's own app that run SQL while pg_restore copies their rows (a CHECK
 *   constraint calling a plpgsql function, made with the real pg_dump in a scratch postgres:15
 *   container): `RESET ROLE; ALTER ROLE … SUPERUSER`, and `COPY … TO PROGRAM`;
 * - an environment's role connecting to every database that is not its own (maintenance
 *   databases, the platform's, the other environment's, another user's, its own backups and
 *   the scratch database of its own import, while it restores and while it waits for a commit);
 * - names: two slugs that would share a database or role, reserved prefixes, and a role or
 *   database on the cluster that the platform did not create.
 * Each case checks the exact refusal and that nothing changed: role flags, files, checksums.
 *
 * "Connecting as the role" runs psql inside the cluster's container over its socket, where
 * authentication is `trust`: that is what the app, which knows the role's password, gets over the
 * network, so only the server's authorization (CONNECT, datallowconn, ownership) is under test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { docker } from '../../src/core/docker.js';
import { databaseName } from '../../src/platform/api/resource-names.js';
import { describeWithDocker } from '../helpers/docker.js';
import { createApp, createUser, request, type TestUser } from '../helpers/api.js';
import { operatorToken, usePlatform } from '../helpers/platform.js';

const ROLE_FLAGS_SQL = (role: string) =>
  `SELECT concat(rolsuper::int, rolcreaterole::int, rolcreatedb::int, rolreplication::int, rolbypassrls::int) FROM pg_roles WHERE rolname = '${role}'`;
const CHECKSUM_SQL = `SELECT count(*) || ':' || md5(coalesce(string_agg(md5(x::text), '' ORDER BY x.id), '')) FROM treasure x`;
const TREASURE_SQL = `CREATE TABLE treasure (id int PRIMARY KEY, secret text);
  INSERT INTO treasure SELECT g, md5(g::text) FROM generate_series(1, 2000) g;`;

describeWithDocker('database tenant boundary', () => {
  const platform = usePlatform();
  let endpoint: string;
  let attacker: TestUser;
  let victim: TestUser;
  let own: string;
  let other: string;
  let crafter: string | undefined;
  const ownDb = (env: 'test' | 'live') => databaseName(own, env);
  const otherDb = (env: 'test' | 'live') => databaseName(other, env);

  const clusterContainer = async () => {
    const [container] = await docker().listContainers({ filters: { label: [`com.docker.swarm.service.name=${platform().name}-postgres`] } });
    if (!container) throw new Error('the platform cluster is not running');
    return container.Id;
  };
  /** As the cluster's admin. */
  const adminSql = async (sql: string, database = 'postgres') =>
    (await execa('docker', ['exec', '-i', await clusterContainer(), 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', database], { input: sql })).stdout.trim();
  /** As `role` (see the header): the result, never thrown, so a refusal can be checked. */
  const roleSql = async (role: string, database: string, sql = 'SELECT 1') =>
    execa('docker', ['exec', '-i', await clusterContainer(), 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-U', role, '-d', database], {
      input: sql,
      reject: false,
    });
  const roleFlags = (role: string) => adminSql(ROLE_FLAGS_SQL(role));
  const backupsOf = (db: string) =>
    adminSql(
      `SELECT coalesce(string_agg(d.datname, ',' ORDER BY d.datname), '') FROM pg_database d
         JOIN db_transfers t ON d.datname = 'divio_bk_' || t.id JOIN environments e ON e.id = t.environment_id WHERE e.db_name = '${db}'`,
      'divio_platform',
    );
  const importsPath = (slug: string, env: string) => `/v1/apps/${slug}/environments/${env}/database/imports`;

  /** A custom-format dump made by the real pg_dump from `sql` run in a fresh database of the scratch container. */
  const craftDump = async (sql: string): Promise<Buffer> => {
    const db = `craft_${randomBytes(4).toString('hex')}`;
    await execa('docker', ['exec', crafter!, 'createdb', '-U', 'postgres', db]);
    await execa('docker', ['exec', '-i', crafter!, 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-U', 'postgres', '-d', db], { input: sql });
    const { stdout } = await execa('docker', ['exec', crafter!, 'pg_dump', '-Fc', '-U', 'postgres', '-d', db], { encoding: 'buffer' });
    return Buffer.from(stdout as Uint8Array);
  };
  /**
   * A table whose CHECK constraint runs `statements` for every row pg_restore copies into the
   * target (not while it is made here: the function looks at the database it runs in).
   */
  const evilDump = (statements: string[]) =>
    craftDump(`
      CREATE FUNCTION public.divio_probe(v int) RETURNS boolean LANGUAGE plpgsql AS $f$
      BEGIN
        IF current_database() NOT LIKE 'craft\\_%' THEN
          ${statements.map((s) => `EXECUTE ${quoteLiteral(s)};`).join('\n          ')}
        END IF;
        RETURN true;
      END $f$;
      CREATE TABLE public.loot (id int CHECK (public.divio_probe(id)));
      INSERT INTO public.loot VALUES (1);
    `);

  beforeAll(async () => {
    endpoint = platform().endpoint;
    const operator = await operatorToken();
    attacker = await createUser(endpoint, operator, 'mallory');
    victim = await createUser(endpoint, operator, 'victim');
    own = await createApp(endpoint, attacker.token, 'evil');
    other = await createApp(endpoint, victim.token, 'vict');
    // Each victim database holds rows whose checksum must never change.
    for (const db of [otherDb('test'), otherDb('live'), ownDb('live')]) {
      const made = await roleSql(db, db, TREASURE_SQL);
      expect(made.exitCode, made.stderr).toBe(0);
    }
    const started = await execa('docker', ['run', '-d', '--rm', '--network', 'none', '-e', 'POSTGRES_HOST_AUTH_METHOD=trust', 'postgres:15']);
    crafter = started.stdout.trim();
    await waitFor(async () => (await execa('docker', ['exec', crafter!, 'psql', '-h', '127.0.0.1', '-U', 'postgres', '-c', 'SELECT 1'], { reject: false })).exitCode === 0, 'the scratch postgres to start');
  });

  afterAll(async () => {
    if (crafter) await execa('docker', ['rm', '-f', crafter], { reject: false });
  });

  it('an import restores as the environment\'s role: nobody else gets into its scratch database, while it restores or waits for its commit', async () => {
    const dump = await craftDump(`CREATE TABLE treasure (id int PRIMARY KEY, secret text);
      INSERT INTO treasure SELECT g, md5(g::text) || repeat(md5((g * 3)::text), 8) FROM generate_series(1, 60000) g;`);
    const body = new PassThrough();
    const upload = rawUpload(platform().port, importsPath(own, 'test'), attacker.token, body);
    // All but the tail: pg_restore has read the table of contents, connected, and waits for the rest of the rows.
    body.write(dump.subarray(0, dump.length - 512));
    let scratch = '';
    await waitFor(async () => {
      scratch = await adminSql(`SELECT coalesce(max(datname), '') FROM pg_stat_activity WHERE datname LIKE 'divio\\_tx\\_%' AND application_name LIKE 'divio-restore-%'`);
      return scratch !== '';
    }, 'the restore to connect');
    expect(await adminSql(`SELECT usename FROM pg_stat_activity WHERE datname = '${scratch}'`)).toBe(ownDb('test'));
    // Its role was let in for that one session only.
    await waitFor(async () => (await adminSql(`SELECT has_database_privilege('${ownDb('test')}', '${scratch}', 'CONNECT')`)) === 'f', 'the scratch database to shut');
    const whileRestoring = await roleSql(ownDb('test'), scratch);
    expect(whileRestoring.exitCode).toBe(2);
    expect(whileRestoring.stderr).toContain(`permission denied for database "${scratch}"`);
    expect(whileRestoring.stderr).toContain('User does not have CONNECT privilege.');

    body.end(dump.subarray(dump.length - 512));
    const restored = await upload;
    expect(restored.status, restored.body).toBe(201);
    const transfer = JSON.parse(restored.body);
    expect(transfer.state).toBe('restored');
    expect(await adminSql(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '${scratch}'`)).toBe('postgres');
    const whileWaiting = await roleSql(ownDb('test'), scratch);
    expect(whileWaiting.exitCode).toBe(2);
    expect(whileWaiting.stderr).toContain(`permission denied for database "${scratch}"`);
    // Another environment's role never had a grant there at all.
    expect(await adminSql(`SELECT has_database_privilege('${otherDb('test')}', '${scratch}', 'CONNECT')`)).toBe('f');

    const committed = await request(endpoint, `${importsPath(own, 'test')}/${transfer.id}/commit`, {
      method: 'POST',
      token: attacker.token,
      body: { sha256: createHash('sha256').update(dump).digest('hex'), bytes: dump.length },
    });
    expect(committed.status, JSON.stringify(committed.body)).toBe(200);
    expect(committed.body.backup).toMatchObject({ reason: 'import' });
    // The swapped-in database and what is in it are the role's; the one it replaced is now the admin's.
    expect(await adminSql(`SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '${ownDb('test')}'`)).toBe(ownDb('test'));
    expect((await roleSql(ownDb('test'), ownDb('test'), 'SELECT count(*) FROM treasure')).stdout.trim()).toBe('60000');
    expect(await adminSql(`SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'`, ownDb('test'))).toBe(ownDb('test'));
  });

  it('a dump that runs RESET ROLE; ALTER ROLE … SUPERUSER while its rows are copied is refused, and the role stays unprivileged', async () => {
    const role = ownDb('test');
    const dump = await evilDump(['RESET ROLE', `ALTER ROLE "${role}" SUPERUSER CREATEROLE CREATEDB`]);
    const before = await snapshot();
    expect(before.flags).toBe('00000');

    const res = await rawUpload(platform().port, importsPath(own, 'test'), attacker.token, dump);
    expect(res.status, res.body).toBe(422);
    const error = JSON.parse(res.body).error;
    expect(error.code).toBe('restore_failed');
    expect(error.message).toMatch(/^The dump did not restore; nothing changed: /);
    expect(error.message).toContain('must be superuser to alter superuser roles or change superuser attribute');

    expect(await snapshot()).toEqual(before);
    // Nor does the role get anywhere by trying the same in its own database.
    const direct = await roleSql(role, role, `RESET ROLE; ALTER ROLE "${role}" SUPERUSER;`);
    expect(direct.exitCode).not.toBe(0);
    expect(direct.stderr).toContain('must be superuser to alter superuser roles');
    expect(await roleFlags(role)).toBe('00000');
  });

  it('a dump that runs COPY … TO PROGRAM while its rows are copied is refused, and no program ran', async () => {
    const marker = `/tmp/divio-pwned-${randomBytes(6).toString('hex')}`;
    const dump = await evilDump(['RESET ROLE', `COPY (SELECT 1) TO PROGRAM 'touch ${marker}'`]);
    const before = await snapshot();

    const res = await rawUpload(platform().port, importsPath(own, 'test'), attacker.token, dump);
    expect(res.status, res.body).toBe(422);
    const error = JSON.parse(res.body).error;
    expect(error.code).toBe('restore_failed');
    expect(error.message).toContain('must be superuser or have privileges of the pg_execute_server_program role to COPY to or from an external program');

    const file = await execa('docker', ['exec', await clusterContainer(), 'test', '-e', marker], { reject: false });
    expect(file.exitCode, `${marker} exists in the cluster's container`).toBe(1);
    expect(await snapshot()).toEqual(before);
  });

  it("an environment's role cannot connect to any database but its own", async () => {
    const role = ownDb('test');
    const control = await roleSql(role, role);
    expect(control.exitCode, control.stderr).toBe(0);
    const before = await snapshot();
    for (const database of ['postgres', 'template1', 'divio_platform', ownDb('live'), otherDb('test'), otherDb('live')]) {
      const denied = await roleSql(role, database, 'SELECT 1');
      expect(denied.exitCode, `${role} reached ${database}`).toBe(2);
      expect(denied.stderr).toContain(`FATAL:  permission denied for database "${database}"`);
      expect(denied.stderr).toContain('User does not have CONNECT privilege.');
    }
    // And the other way round: the victim's role does not reach the attacker's database.
    const reverse = await roleSql(otherDb('test'), role);
    expect(reverse.exitCode).toBe(2);
    expect(reverse.stderr).toContain(`permission denied for database "${role}"`);
    expect(await snapshot()).toEqual(before);
  });

  it("a backup is the admin's: its environment's role cannot connect, open, rename, drop or grant itself it", async () => {
    const role = ownDb('test');
    const [backup] = (await backupsOf(role)).split(',').filter(Boolean);
    expect(backup, 'the import above kept a backup').toBeDefined();
    expect(await adminSql(`SELECT pg_get_userbyid(datdba) || ':' || datallowconn::int FROM pg_database WHERE datname = '${backup}'`)).toBe('postgres:0');
    const before = await snapshot();
    const backupSum = await adminSql(`SELECT datname, datallowconn, datdba, datacl FROM pg_database WHERE datname = '${backup}'`);

    const denied = await roleSql(role, backup!);
    expect(denied.exitCode).toBe(2);
    expect(denied.stderr).toContain(`FATAL:  database "${backup}" is not currently accepting connections`);
    for (const [sql, message] of [
      [`ALTER DATABASE "${backup}" ALLOW_CONNECTIONS true`, `must be owner of database ${backup}`],
      [`ALTER DATABASE "${backup}" RENAME TO "${role}_mine"`, `must be owner of database ${backup}`],
      [`ALTER DATABASE "${backup}" OWNER TO "${role}"`, `must be owner of database ${backup}`],
      [`DROP DATABASE "${backup}"`, `must be owner of database ${backup}`],
    ] as const) {
      const refused = await roleSql(role, role, sql);
      expect(refused.exitCode, sql).not.toBe(0);
      expect(refused.stderr, sql).toContain(message);
    }
    // Holding no privilege there at all, it cannot grant itself one either.
    const granted = await roleSql(role, role, `GRANT CONNECT ON DATABASE "${backup}" TO "${role}"`);
    expect(granted.exitCode).not.toBe(0);
    expect(granted.stderr).toContain(`permission denied for database ${backup}`);
    expect(await adminSql(`SELECT has_database_privilege('${role}', '${backup}', 'CONNECT')`)).toBe('f');

    expect(await adminSql(`SELECT datname, datallowconn, datdba, datacl FROM pg_database WHERE datname = '${backup}'`)).toBe(backupSum);
    expect(await snapshot()).toEqual(before);
  });

  it('two slugs that would share a database or role name: the second is refused with a 409, never a 500', async () => {
    // A slug long enough for its database name to be shortened (to a hash anyone can compute) is
    // refused at create: new slugs have at most 58 characters, so names are never shortened and no
    // two slugs can share one. (Shortened names remain only for apps created before that limit.)
    const long = `l${randomBytes(31).toString('hex')}`.slice(0, 63);
    expect(databaseName(long, 'test').length).toBe(63);
    const made = await request(endpoint, '/v1/apps', { method: 'POST', token: victim.token, body: { slug: long } });
    expect(made.status).toBe(400);
    expect(made.body.error).toMatchObject({ code: 'invalid_input', field: 'body.slug' });
    expect(made.body.error.message).toMatch(/more than 58/);
    expect((await request(endpoint, `/v1/apps/${long}`, { token: victim.token })).status).toBe(404);

    for (const [slug, why] of [
      ['pg-shadow', 'PostgreSQL reserves role names starting with "pg_"'],
      [`divio-tx-${randomBytes(8).toString('hex')}`, 'names starting with "divio_" are the platform\'s own'],
    ] as const) {
      const reserved = await request(endpoint, '/v1/apps', { method: 'POST', token: attacker.token, body: { slug } });
      expect(reserved.status, slug).toBe(409);
      expect(reserved.body.error.message).toBe(`"${slug}" would name its database and role "${databaseName(slug, 'test')}", and ${why}; choose another slug`);
    }
  });

  it('a role or database on the cluster that the platform did not create is never altered or dropped: create is refused naming it', async () => {
    const slug = `foreign-${randomBytes(3).toString('hex')}`;
    const role = databaseName(slug, 'live');
    await adminSql(`CREATE ROLE "${role}" NOLOGIN PASSWORD 'operators-own'; COMMENT ON ROLE "${role}" IS 'not the platform''s'`);
    const roleBefore = await adminSql(`SELECT rolcanlogin, rolsuper, rolpassword, rolconnlimit FROM pg_authid WHERE rolname = '${role}'`);

    const refused = await request(endpoint, '/v1/apps', { method: 'POST', token: attacker.token, body: { slug } });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('conflict');
    expect(refused.body.error.message).toBe(`The database cluster already has a role named "${role}", which this platform did not create; it is left alone`);
    expect(await adminSql(`SELECT rolcanlogin, rolsuper, rolpassword, rolconnlimit FROM pg_authid WHERE rolname = '${role}'`)).toBe(roleBefore);
    // What create made before it met the name was undone; the slug is free.
    expect(await adminSql(`SELECT count(*) FROM pg_roles WHERE rolname = '${databaseName(slug, 'test')}'`)).toBe('0');
    expect(await adminSql(`SELECT count(*) FROM pg_database WHERE datname IN ('${databaseName(slug, 'test')}', '${role}')`)).toBe('0');
    expect((await request(endpoint, `/v1/apps/${slug}`, { token: attacker.token })).status).toBe(404);

    const slug2 = `foreign-${randomBytes(3).toString('hex')}`;
    const database = databaseName(slug2, 'test');
    await adminSql(`CREATE DATABASE "${database}"`);
    await adminSql(TREASURE_SQL, database);
    const dbBefore = `${await adminSql(CHECKSUM_SQL, database)} ${await adminSql(`SELECT datdba, datacl, datallowconn FROM pg_database WHERE datname = '${database}'`)}`;
    const refused2 = await request(endpoint, '/v1/apps', { method: 'POST', token: attacker.token, body: { slug: slug2 } });
    expect(refused2.status).toBe(409);
    expect(refused2.body.error.message).toBe(`The database cluster already has a database named "${database}", which this platform did not create; it is left alone`);
    expect(`${await adminSql(CHECKSUM_SQL, database)} ${await adminSql(`SELECT datdba, datacl, datallowconn FROM pg_database WHERE datname = '${database}'`)}`).toBe(dbBefore);
    // Its role was the platform's (made, then undone); the database stays.
    expect(await adminSql(`SELECT count(*) FROM pg_roles WHERE rolname = '${database}'`)).toBe('0');

    await adminSql(`DROP ROLE "${role}"; DROP DATABASE "${database}"`);
  });

  it("deleting the app drops every backup and scratch database; its databases and roles leave their names (kept, closed, for the grace period); the other user's stay", async () => {
    const victimBefore = await Promise.all([adminSql(CHECKSUM_SQL, otherDb('test')), adminSql(CHECKSUM_SQL, otherDb('live'))]);
    const names = [ownDb('test'), ownDb('live'), ...(await backupsOf(ownDb('test'))).split(',').filter(Boolean)];
    expect(names.length).toBeGreaterThan(2);
    const deleted = await request(endpoint, `/v1/apps/${own}`, { method: 'DELETE', token: attacker.token });
    expect(deleted.status).toBe(200);
    expect(await adminSql(`SELECT count(*) FROM pg_database WHERE datname IN (${names.map((n) => `'${n}'`).join(',')})`)).toBe('0');
    expect(await adminSql(`SELECT count(*) FROM pg_roles WHERE rolname IN ('${ownDb('test')}', '${ownDb('live')}')`)).toBe('0');
    expect(await adminSql(`SELECT count(*) FROM pg_database WHERE datname LIKE 'divio\\_tx\\_%'`)).toBe('0');
    expect(await Promise.all([adminSql(CHECKSUM_SQL, otherDb('test')), adminSql(CHECKSUM_SQL, otherDb('live'))])).toEqual(victimBefore);
  });

  /** Everything the attacks above must leave as it was. */
  async function snapshot() {
    return {
      flags: await roleFlags(ownDb('test')),
      victimFlags: await roleFlags(otherDb('test')),
      own: await adminSql(CHECKSUM_SQL, ownDb('test')),
      ownLive: await adminSql(CHECKSUM_SQL, ownDb('live')),
      victimTest: await adminSql(CHECKSUM_SQL, otherDb('test')),
      victimLive: await adminSql(CHECKSUM_SQL, otherDb('live')),
      backups: await backupsOf(ownDb('test')),
      scratch: await adminSql(`SELECT count(*) FROM pg_database WHERE datname LIKE 'divio\\_tx\\_%'`),
      superusers: await adminSql(`SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolsuper`),
    };
  }
});

function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** POST a body (a buffer, or a stream the caller ends) as application/octet-stream, through the router like the CLI. */
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
