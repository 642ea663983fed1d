import { describe, expect, it } from 'vitest';
import { freeBucketName } from '../../src/platform/api/apps-service.js';
import { retiredDatabaseName } from '../../src/platform/api/retained-resources.js';
import { environmentHost } from '../../src/platform/api/server.js';

describe("names around a deleted app", () => {
  it('a new bucket avoids the names a deleted app keeps, never landing on a plain environment bucket name', () => {
    expect(freeBucketName('shop-test', new Set())).toBe('shop-test');
    expect(freeBucketName('shop-test', new Set(['shop-test']))).toBe('shop-test-r2');
    expect(freeBucketName('shop-test', new Set(['shop-test', 'shop-test-r2']))).toBe('shop-test-r3');
    const long = `${'a'.repeat(58)}-test`;
    const next = freeBucketName(long, new Set([long]));
    expect(next.length).toBeLessThanOrEqual(63);
    expect(next).toMatch(/-r2$/);
    expect(next).not.toMatch(/-(test|live)$/);
  });

  it('retired database names come from the app id, never from user text', () => {
    expect(retiredDatabaseName('42', 'test')).toBe('divio_del_42_test');
    expect(() => retiredDatabaseName('4; DROP', 'test')).toThrow();
    expect(() => retiredDatabaseName('42', 'Test"')).toThrow();
  });

  it("recognises an environment's host, and nothing else, for the nothing-deployed page", () => {
    expect(environmentHost('test-shop.localhost:8600', 'localhost')).toBe('test-shop.localhost');
    expect(environmentHost('LIVE-shop.apps.example.com', 'apps.example.com')).toBe('live-shop.apps.example.com');
    expect(environmentHost('127.0.0.1:8600', 'localhost')).toBeUndefined();
    expect(environmentHost('localhost', 'localhost')).toBeUndefined();
    expect(environmentHost('s3.localhost', 'localhost')).toBeUndefined();
    expect(environmentHost('test-shop.evil.localhost', 'localhost')).toBeUndefined();
    expect(environmentHost('test-shop.localhost.evil', 'localhost')).toBeUndefined();
    expect(environmentHost(undefined, 'localhost')).toBeUndefined();
  });
});
