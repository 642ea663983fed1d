/**
 * The few calls the builder makes to a Docker Registry (HTTP API v2), and how app images are named
 * in it: `ADDRESS/SLUG:COMMIT`, so one commit is built once and every environment reuses the image.
 */
import { InvalidInputError, errorMessage } from '../../../core/errors.js';
import { SLUG_PATTERN } from '../../../shared/project-config.js';

export const COMMIT_PATTERN = /^[0-9a-f]{40}$/;

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

/** `ADDRESS/SLUG:COMMIT`: the name under which the Docker engine pushes and pulls an app's image. */
export function imageReference(address: string, slug: string, commit: string): string {
  if (!SLUG_PATTERN.test(slug)) throw new InvalidInputError(`"${slug}" is not a valid app slug`);
  assertCommit(commit);
  return `${address.replace(/\/+$/, '')}/${slug}:${commit}`;
}

function manifestUrl(registryUrl: string, repository: string, tag: string): string {
  const base = registryUrl.replace(/\/+$/, '');
  return `${base}/v2/${repository.split('/').map(encodeURIComponent).join('/')}/manifests/${encodeURIComponent(tag)}`;
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

/** Whether the registry holds REPOSITORY:TAG. Throws when the registry cannot say (down, auth, error). */
export async function manifestExists(registryUrl: string, repository: string, tag: string, signal?: AbortSignal): Promise<boolean> {
  const url = manifestUrl(registryUrl, repository, tag);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'HEAD',
      headers: { Accept: MANIFEST_MEDIA_TYPES.join(', ') },
      signal: requestSignal(signal),
    });
  } catch (error) {
    throw new Error(`the registry at ${registryUrl} does not answer: ${fetchFailure(error)}`, { cause: error });
  }
  if (response.status === 200) return true;
  if (response.status === 404) return false;
  throw new Error(`the registry at ${registryUrl} answered HTTP ${response.status} for ${repository}:${tag}`);
}
