import { childFailed, runShown } from '../../core/child-output.js';
import type { IO } from '../../core/io.js';
import type { LocalEnvironment } from './local-environment.js';

export interface DownResult {
  app: string;
  removedVolumes: boolean;
}

/** Stop and remove the local containers; with `volumes`, also the database volume (its data). */
export async function down(local: LocalEnvironment, io: IO, options: { volumes?: boolean } = {}): Promise<DownResult> {
  const args = ['down', '--remove-orphans'];
  if (options.volumes) args.push('--volumes');
  const compose = await local.compose();
  await runShown(
    io,
    `Stopping ${local.project.slug}${options.volumes ? ' and removing its volumes' : ''}`,
    compose.run(args, { buffer: false, stdin: 'ignore' }),
    (failure) => childFailed(`${compose.tool.argv.join(' ')} down failed`, 'Read the output above; `divio doctor` checks Docker.', failure),
  );
  return { app: local.project.slug, removedVolumes: options.volumes ?? false };
}
