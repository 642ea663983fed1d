import { BaseCommand } from '../../base-command.js';
import { noPlatformYet } from '../../core/platform-pending.js';

export default class PlatformStatus extends BaseCommand {
  static override summary = "Show the state of the platform's components on this host";
  static override enableJsonFlag = true;

  async run(): Promise<void> {
    await this.parse(PlatformStatus);
    throw noPlatformYet('`divio platform status`');
  }
}
