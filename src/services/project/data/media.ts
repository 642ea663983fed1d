/**
 * `pull media` and `push media`: the project's data/media against an environment's bucket, through
 * the sync engine (services/project/media) with short-lived credentials the API issues for that
 * environment's bucket alone (read-only for pulls). The engine asks for fresh ones when they expire.
 */
import { join } from 'node:path';
import * as routes from '../../../shared/api/routes.js';
import type { MediaCredentials } from '../../../shared/api/schemas.js';
import type { IO } from '../../../core/io.js';
import { planMediaSync, syncMedia, type MediaRemote, type MediaSyncPlan, type MediaSyncResult } from '../media/sync.js';
import type { RemoteEnvironment } from './remote.js';

export const MEDIA_DIR = join('data', 'media');
/** The digest cache of data/media: under data/ (git-ignored in every project), outside what is synced. */
export const MEDIA_MANIFEST = join('data', '.divio-media-manifest.json');
/** Ask for a new pair this long before the current one expires. */
const RENEW_BEFORE_MS = 5 * 60 * 1000;

export interface MediaOptions {
  delete?: boolean;
  maxDelete?: number;
  concurrency?: number;
  signal?: AbortSignal;
}

export async function mediaRemote(remote: RemoteEnvironment, access: 'read' | 'write'): Promise<MediaRemote> {
  const issue = () => remote.client.call(routes.issueMediaCredentials, { params: { slug: remote.slug, env: remote.environment }, body: { access } });
  let current: MediaCredentials = await issue();
  let renewing: Promise<MediaCredentials> | undefined;
  return {
    endpoint: current.endpoint,
    region: current.region,
    bucket: current.bucket,
    prefix: current.prefix,
    credentials: async () => {
      if (Date.parse(current.expiresAt) - Date.now() < RENEW_BEFORE_MS) {
        renewing ??= issue().finally(() => (renewing = undefined));
        current = await renewing;
      }
      return { accessKeyId: current.accessKeyId, secretAccessKey: current.secretAccessKey, expiration: new Date(current.expiresAt) };
    },
  };
}

function syncOptions(projectRoot: string, io: IO, remote: MediaRemote, direction: 'push' | 'pull', options: MediaOptions) {
  return {
    direction,
    localDir: join(projectRoot, MEDIA_DIR),
    manifestFile: join(projectRoot, MEDIA_MANIFEST),
    remote,
    io,
    delete: options.delete,
    maxDelete: options.maxDelete,
    concurrency: options.concurrency,
    signal: options.signal,
  };
}

export async function pullMedia(projectRoot: string, io: IO, remote: RemoteEnvironment, options: MediaOptions = {}): Promise<MediaSyncResult> {
  return syncMedia(syncOptions(projectRoot, io, await mediaRemote(remote, 'read'), 'pull', options));
}

/**
 * Push in two steps, so the command can ask before anything on test or live is overwritten or
 * deleted: `plan` says what would change; `run` does it (with the same credentials).
 */
export async function preparePushMedia(projectRoot: string, io: IO, remote: RemoteEnvironment, options: MediaOptions = {}) {
  const s3 = await mediaRemote(remote, 'write');
  const settings = syncOptions(projectRoot, io, s3, 'push', options);
  return {
    plan: (): Promise<MediaSyncPlan> => planMediaSync(settings),
    run: (): Promise<MediaSyncResult> => syncMedia(settings),
  };
}
