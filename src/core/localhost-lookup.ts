/**
 * A `lookup` for sockets and http agents that resolves `localhost` and every `*.localhost` name to
 * 127.0.0.1 (RFC 6761 reserves them for the loopback). Browsers and curl do this themselves, but
 * Node asks the system resolver, which on many machines answers ENOTFOUND for
 * `s3.divio.localhost`. Every other name goes to dns.lookup unchanged.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import type { LookupFunction } from 'node:net';

const LOOPBACK: LookupAddress = { address: '127.0.0.1', family: 4 };

export function isLocalhostName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}

type Callback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

export const localhostLookup = ((hostname: string, options: LookupOptions | number | Callback, callback?: Callback) => {
  const done = (typeof options === 'function' ? options : callback) as Callback;
  const settings: LookupOptions = typeof options === 'object' && options !== null ? options : { family: typeof options === 'number' ? options : 0 };
  // An IPv6-only request cannot be answered with 127.0.0.1; the system resolver gets it instead.
  if (isLocalhostName(hostname) && settings.family !== 6 && settings.family !== 'IPv6') {
    // net with autoSelectFamily (Node 20's default) asks for all addresses.
    if (settings.all) process.nextTick(done, null, [LOOPBACK]);
    else process.nextTick(done, null, LOOPBACK.address, LOOPBACK.family);
    return;
  }
  dnsLookup(hostname, settings, done as (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family: number) => void);
}) as LookupFunction;
