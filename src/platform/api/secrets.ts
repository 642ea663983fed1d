/**
 * Secrets the platform keeps in its own database (environment database passwords, media keys,
 * SECRET_KEY, variable values) are sealed with AES-256-GCM under a key that lives only in the
 * platform's configuration (platform.json, 0600, handed to the API as a Swarm secret), so a dump of
 * `divio_platform` alone reveals none of them.
 *
 * A sealed value is `dvs1:` + base64url(nonce ‖ ciphertext ‖ tag), with a random 96-bit nonce per
 * value. The prefix names the format, so a later one can be told apart. The column a value belongs
 * to is authenticated data: a value copied into another column (a media secret pasted over a
 * database password) is refused rather than read as that column's secret.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export const SEALED_PREFIX = 'dvs1:';
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** Where a sealed value is kept; bound into the ciphertext. */
export type SecretPurpose =
  | 'environments.db_password'
  | 'environments.media_access_key'
  | 'environments.media_secret_key'
  | 'environments.secret_key'
  | 'env_vars.value'
  | 'deployments.env_vars';

/** A stored secret that does not open: changed, truncated, from another column, or sealed under another key. */
export class SealedValueRefused extends Error {
  constructor(purpose: SecretPurpose, why: string) {
    super(
      `a stored secret (${purpose}) cannot be decrypted: ${why}. It was changed in the database, or sealed under ` +
        "another key: the platform configuration's secretsKey must be the one it was stored with",
    );
  }
}

/** A fresh key, as platform.json keeps it (base64url of 32 random bytes). */
export function generateSecretsKey(): string {
  return randomBytes(KEY_BYTES).toString('base64url');
}

export class SecretBox {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error(`the secrets key must be ${KEY_BYTES} bytes, not ${key.length}`);
    this.key = Buffer.from(key);
  }

  /** From the configuration's base64url text. */
  static fromConfig(encoded: string): SecretBox {
    if (!/^[A-Za-z0-9_-]{43}$/.test(encoded)) {
      throw new Error('the configuration\'s secretsKey is not 32 bytes of base64url (43 characters); restore it from platform.json');
    }
    return new SecretBox(Buffer.from(encoded, 'base64url'));
  }

  seal(plaintext: string, purpose: SecretPurpose): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(purpose, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return SEALED_PREFIX + Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url');
  }

  open(sealed: string, purpose: SecretPurpose): string {
    if (!sealed.startsWith(SEALED_PREFIX)) throw new SealedValueRefused(purpose, 'it is not a sealed value');
    const raw = sealed.slice(SEALED_PREFIX.length);
    if (!/^[A-Za-z0-9_-]*$/.test(raw)) throw new SealedValueRefused(purpose, 'it is not base64url');
    const bytes = Buffer.from(raw, 'base64url');
    if (bytes.length < NONCE_BYTES + TAG_BYTES) throw new SealedValueRefused(purpose, 'it is too short');
    const nonce = bytes.subarray(0, NONCE_BYTES);
    const tag = bytes.subarray(bytes.length - TAG_BYTES);
    const body = bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(purpose, 'utf8'));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    } catch {
      throw new SealedValueRefused(purpose, 'its authentication tag does not match');
    }
  }

  sealNullable(plaintext: string | null, purpose: SecretPurpose): string | null {
    return plaintext === null ? null : this.seal(plaintext, purpose);
  }

  openNullable(sealed: string | null, purpose: SecretPurpose): string | null {
    return sealed === null ? null : this.open(sealed, purpose);
  }
}
