import { Flags } from '@oclif/core';
import { BaseCommand, environmentArg, projectFlags } from '../../../base-command.js';
import { projectClient } from '../../../services/project/app-ref.js';
import { confirmOverwrite } from '../../../core/confirm.js';
import { resolveProject } from '../../../core/project.js';
import { preparePushMedia } from '../../../services/project/data/media.js';
import { DEFAULT_MAX_DELETE, type MediaSyncResult } from '../../../services/project/media/sync.js';

export default class PushMedia extends BaseCommand {
  static override summary = "Copy new and changed files from data/media to an environment's storage";
  static override description =
    'Incremental and parallel: files whose size and checksum already match are skipped; every upload is verified ' +
    'against our own digests, and large files go up in parts (a half-done upload never shows). Files only on the ' +
    'environment stay, unless --delete (which deletes nothing if any transfer failed). Overwriting or deleting ' +
    'files on test or live asks for confirmation (live: type the slug), or --yes.';
  static override aliases = ['app:push:media'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project push media', '<%= config.bin %> project push media live --delete --yes'];
  static override args = { environment: environmentArg() };
  static override flags = {
    ...projectFlags,
    delete: Flags.boolean({ description: 'also delete files on the environment that are not in data/media' }),
    'max-delete': Flags.integer({
      description: 'with --delete: refuse (before anything moves) a sync that would delete more files than this',
      default: DEFAULT_MAX_DELETE,
      min: 0,
    }),
    concurrency: Flags.integer({ description: 'transfers in flight at once', default: 16, min: 1, max: 128 }),
    yes: Flags.boolean({ char: 'y', description: 'confirm overwriting or deleting files on the environment without asking' }),
  };

  async run(): Promise<MediaSyncResult> {
    const { args, flags } = await this.parse(PushMedia);
    const project = await resolveProject({ app: flags.app });
    const client = await projectClient(project.config.endpoint);
    const environment = args.environment as 'test' | 'live';
    const push = await preparePushMedia(project.root, this.io, { client, slug: project.slug, environment }, { delete: flags.delete, maxDelete: flags['max-delete'], concurrency: flags.concurrency });
    if (!flags.yes) {
      // Adding files changes nothing that exists; replacing or deleting does, and needs a yes.
      const plan = await push.plan();
      const replaced = plan.transfers.filter((t) => t.reason === 'changed').length;
      const deleted = flags.delete ? plan.targetOnly.length : 0;
      if (replaced > 0 || deleted > 0) {
        const what = [replaced > 0 ? `replacing ${replaced} file(s)` : '', deleted > 0 ? `deleting ${deleted} file(s)` : ''].filter(Boolean).join(' and ');
        await confirmOverwrite(this.io, { yes: false, action: `Pushing media to ${environment} of ${project.slug} means ${what} there`, slug: project.slug, typeSlug: environment === 'live', platform: client.endpoint });
      }
    }
    const result = await push.run();
    return result;
  }
}
