/**
 * The few calls the builder makes to a Docker Registry (HTTP API v2), and how app images are named
 * in it. Each app instance has a repository of its own, `SLUG.APPID`: an app deleted and created
 * again under the same slug gets a new id, so it never finds (or reuses) the old one's images.
 * Images are pushed under `REPO:COMMIT`, but deployed by digest (`REPO@sha256:…`, recorded when the
 * push finished): a tag can be overwritten by anyone holding the registry's account, a digest names
 * exactly the bytes the builder pushed.
 */
import { InvalidInputError, errorMessage } from '../../../core/errors.js';

export const COMMIT_PATTERN = /^[0-9a-f]{40}$/;
export const DIGEST_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** The registry as the API and the engine reach it, with the account both use. */
export interface RegistryAccess {
  /** How the Docker engine names the registry in image references (push and pull), e.g. 127.0.0.1:8600. */
  address: string;
  /** How this process reaches the registry over HTTP, e.g. http://divio-registry:5000. */
  url: string;
  username?: string;
  password?: string;
}

/**
 * A registry answers with the manifest type it holds only if the client accepts it; a build pushed
 * by a BuildKit engine may be an OCI manifest or index, an older engine's a Docker schema 2 one.
 */
const MANIFEST_MEDIA_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
];

/** A registry that does not answer within this is treated as down rather than waited on. */
const REQUEST_TIMEOUT_MS = 15_000;

export function assertCommit(commit: string): void {
  if (!COMMIT_PATTERN.test(commit)) throw new InvalidInputError(`"${commit}" is not a full commit id (40 lower-case hex digits)`);
}

export { imageRepository } from '../resource-names.js';

function registryPrefix(address: string): string {
  return address.replace(/\/+$/, '');
}

/** `ADDRESS/REPO:COMMIT`: the name the engine pushes under. Never deployed: see digestReference. */
export function imageReference(address: string, repository: string, commit: string): string {
  assertCommit(commit);
  return `${registryPrefix(address)}/${repository}:${commit}`;
}

/** `ADDRESS/REPO@sha256:…`: what a deployment runs. */
export function digestReference(address: string, repository: string, digest: string): string {
  if (!DIGEST_PATTERN.test(digest)) throw new Error(`"${digest}" is not a sha256 image digest`);
  return `${registryPrefix(address)}/${repository}@${digest}`;
}

/** The digest of an `ADDRESS/REPO@sha256:…` reference in REPO of this registry; undefined for anything else. */
export function recordedDigest(image: string, address: string, repository: string): string | undefined {
  const prefix = `${registryPrefix(address)}/${repository}@`;
  if (!image.startsWith(prefix)) return undefined;
  const digest = image.slice(prefix.length);
  return DIGEST_PATTERN.test(digest) ? digest : undefined;
}

/** What the engine and Swarm are given to authenticate (X-Registry-Auth). */
export function engineAuth(access: RegistryAccess): { username?: string; password?: string; serveraddress: string } {
  return {
    ...(access.username ? { username: access.username, password: access.password ?? '' } : {}),
    serveraddress: registryPrefix(access.address),
  };
}

function manifestUrl(registryUrl: string, repository: string, reference: string): string {
  const base = registryUrl.replace(/\/+$/, '');
  return `${base}/v2/${repository.split('/').map(encodeURIComponent).join('/')}/manifests/${encodeURIComponent(reference)}`;
}

function requestSignal(signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/** fetch reports every network failure as "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, timeout) is in its cause. */
function fetchFailure(error: unknown): string {
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  return cause === undefined ? errorMessage(error) : `${errorMessage(error)} (${errorMessage(cause)})`;
}

export function basicAuthorization(access: Pick<RegistryAccess, 'username' | 'password'>): Record<string, string> {
  if (!access.username) return {};
  return { Authorization: `Basic ${Buffer.from(`${access.username}:${access.password ?? ''}`).toString('base64')}` };
}

/**
 * The digest of REPOSITORY:REFERENCE (a tag or a digest), or undefined when the registry does not
 * hold it. Throws when the registry cannot say (down, refused credentials, error).
 */
export async function manifestDigest(
  access: Pick<RegistryAccess, 'url' | 'username' | 'password'>,
  repository: string,
  reference: string,
  signal?: AbortSignal,
): Promise<string | undefined> {
  const url = manifestUrl(access.url, repository, reference);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'HEAD',
      headers: { Accept: MANIFEST_MEDIA_TYPES.join(', '), ...basicAuthorization(access) },
      signal: requestSignal(signal),
    });
  } catch (error) {
    throw new Error(`the registry at ${access.url} does not answer: ${fetchFailure(error)}`, { cause: error });
  }
  if (response.status === 404) return undefined;
  if (response.status === 401) throw new Error(`the registry at ${access.url} refused the platform's credentials (HTTP 401)`);
  if (response.status !== 200) throw new Error(`the registry at ${access.url} answered HTTP ${response.status} for ${repository}:${reference}`);
  const digest = response.headers.get('docker-content-digest') ?? '';
  if (DIGEST_PATTERN.test(digest)) return digest;
  // A digest reference the registry answered for is that digest (content-addressed).
  if (DIGEST_PATTERN.test(reference)) return reference;
  throw new Error(`the registry at ${access.url} answered for ${repository}:${reference} without a Docker-Content-Digest`);
}

/** Whether the registry holds REPOSITORY:REFERENCE. Throws when the registry cannot say. */
export async function manifestExists(
  access: Pick<RegistryAccess, 'url' | 'username' | 'password'>,
  repository: string,
  reference: string,
  signal?: AbortSignal,
): Promise<boolean> {
  return (await manifestDigest(access, repository, reference, signal)) !== undefined;
}
