/**
 * core/localhost-lookup.ts: `*.localhost` resolves to the loopback without the system resolver
 * (which answers ENOTFOUND on these machines); every other name still goes to dns.lookup.
 */
import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import { isLocalhostName, localhostLookup } from '../../src/core/localhost-lookup.js';

function lookup(hostname: string, options: object): Promise<{ address: string | LookupAddress[]; family?: number }> {
  return new Promise((resolve, reject) => {
    (localhostLookup as unknown as (host: string, options: object, callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void) => void)(
      hostname,
      options,
      (error, address, family) => (error ? reject(error) : resolve({ address, family })),
    );
  });
}

describe('localhostLookup', () => {
  it('knows localhost and every name under .localhost, in any case, with or without the root dot', () => {
    for (const name of ['localhost', 's3.divio.localhost', 'TEST-shop.LocalHost', 'a.localhost.']) expect(isLocalhostName(name)).toBe(true);
    for (const name of ['localhost.example.com', 'mylocalhost', 'example.com']) expect(isLocalhostName(name)).toBe(false);
  });

  it('answers 127.0.0.1 in both callback shapes (one address, or all as net asks with autoSelectFamily)', async () => {
    expect(await lookup('s3.divio.localhost', {})).toEqual({ address: '127.0.0.1', family: 4 });
    expect(await lookup('s3.divio.localhost', { all: true })).toEqual({ address: [{ address: '127.0.0.1', family: 4 }] });
  });

  it('passes other names to dns.lookup', async () => {
    expect(await lookup('127.0.0.2', { family: 4 })).toEqual({ address: '127.0.0.2', family: 4 });
    // .invalid never resolves (ENOTFOUND, or EAI_AGAIN without a network): it was not answered here.
    await expect(lookup('name.invalid', {})).rejects.toThrow();
  });
});
