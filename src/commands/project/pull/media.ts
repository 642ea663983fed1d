import { Flags } from '@oclif/core';
import { BaseCommand, environmentArg, projectFlags } from '../../../base-command.js';
import { projectClient } from '../../../services/project/app-ref.js';
import { resolveProject } from '../../../core/project.js';
import { pullMedia } from '../../../services/project/data/media.js';
import { DEFAULT_MAX_DELETE, type MediaSyncResult } from '../../../services/project/media/sync.js';

export default class PullMedia extends BaseCommand {
  static override summary = "Copy new and changed media files from an environment's storage into data/media";
  static override description =
    'Incremental and parallel: files whose size and checksum already match are skipped. Every download is verified ' +
    'before it replaces a local file. Local files that are not on the environment stay, unless --delete (which ' +
    'deletes nothing if any transfer failed). Keys that cannot be local paths are refused and listed.';
  static override aliases = ['app:pull:media'];
  static override enableJsonFlag = true;
  static override examples = ['<%= config.bin %> project pull media', '<%= config.bin %> project pull media live --delete'];
  static override args = { environment: environmentArg() };
  static override flags = {
    ...projectFlags,
    delete: Flags.boolean({ description: 'also delete local files that are not on the environment' }),
    'max-delete': Flags.integer({
      description: 'with --delete: refuse (before anything moves) a sync that would delete more files than this',
      default: DEFAULT_MAX_DELETE,
      min: 0,
    }),
    concurrency: Flags.integer({ description: 'transfers in flight at once', default: 16, min: 1, max: 128 }),
  };

  async run(): Promise<MediaSyncResult> {
    const { args, flags } = await this.parse(PullMedia);
    const project = await resolveProject({ app: flags.app });
    const client = await projectClient(project.config.endpoint);
    const environment = args.environment as 'test' | 'live';
    const result = await pullMedia(project.root, this.io, { client, slug: project.slug, environment }, { delete: flags.delete, maxDelete: flags['max-delete'], concurrency: flags.concurrency });
    return result;
  }
}
