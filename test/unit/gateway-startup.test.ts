import { describe, expect, it } from 'vitest';
import { readStartup, refusal } from '../../src/platform/gateway/pg-startup.js';
import { isEnvironmentRole } from '../../src/platform/gateway/roles.js';
import { databaseName } from '../../src/platform/api/resource-names.js';

function startup(params: Record<string, string>, version = 3 << 16): Buffer {
  const pairs = Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('');
  const body = Buffer.concat([Buffer.alloc(4), Buffer.from(`${pairs}\0`)]);
  body.writeInt32BE(version, 0);
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([length, body]);
}

function request(code: number, length = 8): Buffer {
  const b = Buffer.alloc(length);
  b.writeInt32BE(length, 0);
  b.writeInt32BE(code, 4);
  return b;
}

describe('the gateway reads the startup message', () => {
  it('finds the role, whatever the message is split into', () => {
    const message = startup({ user: 'shop_test', database: 'shop_test', application_name: 'x' });
    for (let cut = 0; cut < message.length; cut++) expect(readStartup(message.subarray(0, cut)).kind).toBe('incomplete');
    expect(readStartup(message)).toEqual({ kind: 'forward', length: message.length, user: 'shop_test', database: 'shop_test' });
  });

  it('takes the last of repeated parameters, as PostgreSQL does', () => {
    const message = Buffer.from(startup({ user: 'shop_test' }).toString('latin1').replace('user\0shop_test\0', 'user\0shop_test\0user\0postgres\0'), 'latin1');
    message.writeInt32BE(message.length, 0);
    expect(readStartup(message)).toMatchObject({ kind: 'forward', user: 'postgres' });
  });

  it('declines SSL and GSS encryption and forwards cancel requests', () => {
    expect(readStartup(request(80877103))).toEqual({ kind: 'decline-encryption', length: 8 });
    expect(readStartup(request(80877104))).toEqual({ kind: 'decline-encryption', length: 8 });
    expect(readStartup(request(80877102, 16))).toEqual({ kind: 'forward', length: 16, cancel: true });
  });

  it('refuses what is not a well-formed protocol 3 startup', () => {
    expect(readStartup(request(80877102, 12)).kind).toBe('invalid');
    expect(readStartup(startup({ user: 'shop_test' }, 2 << 16)).kind).toBe('invalid');
    const huge = Buffer.alloc(8);
    huge.writeInt32BE(1 << 20, 0);
    expect(readStartup(huge).kind).toBe('invalid');
    const unterminated = startup({ user: 'shop_test' }).subarray(0, -1);
    unterminated.writeInt32BE(unterminated.length, 0);
    expect(readStartup(unterminated).kind).toBe('invalid');
  });

  it('answers a refusal as a FATAL ErrorResponse with the message', () => {
    const answer = refusal('no');
    expect(answer[0]).toBe(0x45);
    expect(answer.readInt32BE(1)).toBe(answer.length - 1);
    expect(answer.toString('utf8')).toContain('SFATAL\0');
    expect(answer.toString('utf8')).toContain('C28000\0Mno\0\0');
  });
});

describe('roles the gateway lets through', () => {
  it('are the environment roles the platform makes, long slugs included', () => {
    for (const slug of ['shop', 'a-b-c', 'x'.repeat(58), `${'long-'.repeat(11)}abc`]) {
      for (const env of ['test', 'live'] as const) expect(isEnvironmentRole(databaseName(slug, env))).toBe(true);
    }
  });

  it("never the admin, PostgreSQL's own roles or the platform's", () => {
    for (const role of ['postgres', 'divio_platform', 'divio_x_test', 'pg_x_test', 'pg_read_server_files', '', 'Shop_test', 'shop_prod', 'shop test', `${'a'.repeat(60)}_test`]) {
      expect(isEnvironmentRole(role), role).toBe(false);
    }
  });
});
