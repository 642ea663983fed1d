/**
 * The replaceable parts behind the API. The embedded platform provides one implementation of each;
 * an operator's external PostgreSQL, S3 or registry plugs in behind the same interface, and callers
 * never know which they have.
 */
import type { BranchProtection } from './git/protection.js';

/** One database and one login role per environment, on a PostgreSQL cluster. */
export interface DatabaseCluster {
  /** Idempotent: creates the role (or resets its password) and a database it owns. */
  provision(req: { database: string; role: string; password: string }): Promise<void>;
  /** Idempotent: ends connections, drops the database and the role. */
  deprovision(req: { database: string; role: string }): Promise<void>;
  /**
   * Idempotent: the database and the role take `retiredName` (the role NOLOGIN, its sessions
   * ended), so the data stays for an operator while the environment's names are free again.
   */
  retire(req: { database: string; role: string; retiredName: string }): Promise<void>;
  /** Where app containers connect. */
  readonly appHost: string;
  readonly appPort: number;
  /** Throws when the cluster does not answer. */
  check(): Promise<void>;
}

export interface MediaGrant {
  endpoint: string;
  publicUrl: string;
  region: string;
  bucket: string;
  /** Key prefix inside the bucket ('' when the environment owns the whole bucket). */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** One bucket (or prefix) and credentials per environment, on S3-compatible storage. */
export interface MediaStorage {
  /** Idempotent: creates the bucket and credentials that can reach it (and only it, where the store can enforce that). */
  provision(req: { bucket: string }): Promise<MediaGrant>;
  /** Idempotent: deletes every object, the bucket and its credentials. */
  deprovision(req: { bucket: string }): Promise<void>;
  /** Idempotent: the bucket's keys stop working; its objects stay (a deleted app's grace period). */
  retire(req: { bucket: string }): Promise<void>;
  /**
   * A key pair for one bucket that stops working at `expiresAt` (the CLI's pull and push media).
   * Read access refuses every change. Confined to the bucket where the store can enforce it.
   */
  issueTemporaryCredentials(req: { bucket: string; access: 'read' | 'write'; ttlSeconds: number }): Promise<TemporaryMediaGrant>;
  check(): Promise<void>;
}

export interface TemporaryMediaGrant extends MediaGrant {
  access: 'read' | 'write';
  expiresAt: Date;
}

/** Bare repositories, one per app. */
export interface GitHosting {
  create(slug: string): Promise<void>;
  /**
   * Idempotent: deployment refs hidden from clients, and PROTECTIONS as the branches git refuses to
   * rewrite or delete (the repository's whole list: branches not in it are not protected).
   */
  secure(slug: string, protections: readonly BranchProtection[]): Promise<void>;
  remove(slug: string): Promise<void>;
  exists(slug: string): Promise<boolean>;
  check(): Promise<void>;
}
