import { BaseCommand, projectFlags } from '../../base-command.js';
import { resolveProject } from '../../core/project.js';
import { projectStatus, type ProjectStatus } from '../../services/project/status.js';

export default class ProjectStatusCommand extends BaseCommand {
  static override summary = 'Show where each environment answers and its state';
  static override aliases = ['app:status'];
  static override enableJsonFlag = true;
  static override flags = { ...projectFlags };

  async run(): Promise<ProjectStatus> {
    const { flags } = await this.parse(ProjectStatusCommand);
    const project = await resolveProject({ app: flags.app });
    const status = await projectStatus(project);
    const c = this.io.color;
    this.log(`${c.bold(status.app)}${status.endpoint ? ` on ${status.endpoint}` : ' (not linked to a platform)'}`);
    for (const env of status.environments) {
      const extra = env.commit ? `  ${String(env.commit).slice(0, 12)}` : env.error ? `  (${String(env.error)})` : '';
      this.log(`  ${env.name.padEnd(6)} ${String(env.state).padEnd(12)} ${env.url ?? '-'}${extra}`);
      for (const s of (env.services as { name: string; state: string; health: string | null }[] | undefined) ?? []) {
        this.log(`         ${c.dim(`${s.name}: ${s.state}${s.health ? ` (${s.health})` : ''}`)}`);
      }
    }
    return status;
  }
}
