/**
 * API tokens: `dvt_<id>_<secret>`. The platform stores only the id and a SHA-256 of the secret; a
 * presented token is found by id and its secret compared in constant time, so neither the database
 * nor a timing side channel gives a usable token away.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const TOKEN_PATTERN = /^dvt_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$/;
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export interface GeneratedToken {
  token: string;
  id: string;
  /** hex SHA-256 of the secret part */
  hash: string;
}

export function generateToken(): GeneratedToken {
  const idBytes = randomBytes(16);
  const id = Array.from(idBytes, (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join('');
  const secret = randomBytes(32).toString('base64url');
  return { token: `dvt_${id}_${secret}`, id, hash: hashSecret(secret) };
}

export function parseToken(token: string): { id: string; secret: string } | undefined {
  const match = TOKEN_PATTERN.exec(token);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Constant-time comparison of a presented secret against a stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const presented = createHash('sha256').update(secret).digest();
  const stored = Buffer.from(storedHash, 'hex');
  return stored.length === presented.length && timingSafeEqual(presented, stored);
}

/** A token's lifetime as people write it: `90s`, `45m`, `12h`, `30d`, `52w`. */
export const TOKEN_LIFETIME_PATTERN = /^([1-9][0-9]{0,9})([smhdw])$/;
/** Ten years: anything longer is a mistake, not a lifetime. */
export const MAX_TOKEN_LIFETIME_SECONDS = 10 * 365 * 86_400;
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400, w: 7 * 86_400 } as const;

/** Seconds in a lifetime given as a number of seconds or a duration; undefined when it is neither or too long. */
export function lifetimeSeconds(value: number | string): number | undefined {
  let seconds: number;
  if (typeof value === 'number') {
    seconds = value;
  } else {
    const match = TOKEN_LIFETIME_PATTERN.exec(value);
    if (!match) return undefined;
    seconds = Number(match[1]) * UNIT_SECONDS[match[2] as keyof typeof UNIT_SECONDS];
  }
  return Number.isInteger(seconds) && seconds >= 1 && seconds <= MAX_TOKEN_LIFETIME_SECONDS ? seconds : undefined;
}
