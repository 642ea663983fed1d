import { Flags } from '@oclif/core';
import { BaseCommand } from '../../base-command.js';
import { platformStatus, type PlatformStatus } from '../../services/platform/status.js';

export default class PlatformStatusCommand extends BaseCommand {
  static override summary = "Show the state of the platform's components on this host";
  static override description =
    "Each component's Swarm service (running, starting, stopped, failed or missing, with its replicas and last " +
    "error) and, when the router answers, the API's own health report. Exits 0 whatever the state: it is a report.";
  static override enableJsonFlag = true;
  static override flags = {
    'data-dir': Flags.string({ description: 'the data directory of the platform (default: the one the last start used)', helpValue: 'DIR' }),
  };

  async run(): Promise<PlatformStatus> {
    const { flags } = await this.parse(PlatformStatusCommand);
    const status = await platformStatus({ dataDir: flags['data-dir'] });
    const c = this.io.color;
    if (status.state === 'absent' && status.components.length === 0) {
      this.log(`No platform in ${status.dataDir}. Start one with \`divio platform start\`.`);
      return status;
    }
    const colour = (state: string) =>
      state === 'running' ? c.green(state) : state === 'failed' || state === 'missing' ? c.red(state) : c.yellow(state);
    this.log(`${c.bold(`platform "${status.name}"`)} ${colour(status.state)} at ${status.endpoint}`);
    this.log(`  data: ${status.dataDir}`);
    for (const component of status.components) {
      const detail = component.detail ? `  ${c.dim(component.detail)}` : '';
      this.log(`  ${component.name.padEnd(9)} ${colour(component.state).padEnd(8 + (colour(component.state).length - component.state.length))} ${component.replicas.padEnd(5)} ${component.service}${detail}`);
    }
    if (status.health) {
      const parts = status.health.components.map((p) => `${p.name} ${p.state === 'ok' ? c.green('ok') : c.red(p.state)}${p.detail ? ` (${p.detail})` : ''}`);
      this.log(`  API health: ${status.health.status}${parts.length ? ` — ${parts.join(', ')}` : ''}`);
    }
    return status;
  }
}
