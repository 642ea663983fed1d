/** The cipher that seals the platform's stored secrets: round trips, and refuses anything changed. */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SEALED_PREFIX, SealedValueRefused, SecretBox, generateSecretsKey } from '../../src/platform/api/secrets.js';

const box = SecretBox.fromConfig(generateSecretsKey());

describe('SecretBox', () => {
  it('round-trips any text, with a fresh nonce per value, and never contains the plaintext', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (text) => {
        const a = box.seal(text, 'env_vars.value');
        const b = box.seal(text, 'env_vars.value');
        expect(a.startsWith(SEALED_PREFIX)).toBe(true);
        expect(a).not.toBe(b);
        if (text.length >= 4) expect(a).not.toContain(text);
        expect(box.open(a, 'env_vars.value')).toBe(text);
        expect(box.open(b, 'env_vars.value')).toBe(text);
      }),
    );
  });

  it('refuses a value with any byte changed', () => {
    const sealed = box.seal('s3cret-database-password', 'environments.db_password');
    const bytes = Buffer.from(sealed.slice(SEALED_PREFIX.length), 'base64url');
    for (let i = 0; i < bytes.length; i++) {
      const tampered = Buffer.from(bytes);
      tampered[i]! ^= 0x01;
      expect(() => box.open(SEALED_PREFIX + tampered.toString('base64url'), 'environments.db_password'), `byte ${i}`).toThrow(SealedValueRefused);
    }
    // Cut short, grown, emptied, or not sealed at all.
    expect(() => box.open(sealed.slice(0, -2), 'environments.db_password')).toThrow(SealedValueRefused);
    expect(() => box.open(sealed + 'AA', 'environments.db_password')).toThrow(SealedValueRefused);
    expect(() => box.open(SEALED_PREFIX, 'environments.db_password')).toThrow(SealedValueRefused);
    expect(() => box.open('s3cret-database-password', 'environments.db_password')).toThrow(/not a sealed value/);
    expect(() => box.open(`${SEALED_PREFIX}!!!`, 'environments.db_password')).toThrow(SealedValueRefused);
  });

  it('refuses a value sealed under another key', () => {
    const other = new SecretBox(randomBytes(32));
    const sealed = other.seal('media-secret', 'environments.media_secret_key');
    expect(() => box.open(sealed, 'environments.media_secret_key')).toThrow(/authentication tag/);
    expect(other.open(sealed, 'environments.media_secret_key')).toBe('media-secret');
  });

  it('refuses a value moved to another column', () => {
    const sealed = box.seal('media-secret', 'environments.media_secret_key');
    expect(() => box.open(sealed, 'environments.db_password')).toThrow(SealedValueRefused);
  });

  it('the error names the column but never the value', () => {
    const sealed = box.seal('do-not-print-me', 'environments.secret_key');
    try {
      new SecretBox(randomBytes(32)).open(sealed, 'environments.secret_key');
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toContain('environments.secret_key');
      expect((error as Error).message).not.toContain('do-not-print-me');
    }
  });

  it('accepts only a 32-byte key', () => {
    expect(() => new SecretBox(randomBytes(16))).toThrow(/32 bytes/);
    expect(() => SecretBox.fromConfig('short')).toThrow(/secretsKey/);
    expect(() => SecretBox.fromConfig(randomBytes(32).toString('hex'))).toThrow(/secretsKey/);
  });

  it('keeps null as null', () => {
    expect(box.sealNullable(null, 'environments.media_access_key')).toBeNull();
    expect(box.openNullable(null, 'environments.media_access_key')).toBeNull();
    expect(box.openNullable(box.sealNullable('DMKEY', 'environments.media_access_key'), 'environments.media_access_key')).toBe('DMKEY');
  });
});
