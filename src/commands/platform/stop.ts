import { Flags } from '@oclif/core';
import { BaseCommand } from '../../base-command.js';
import { stopPlatform, type StopResult } from '../../services/platform/stop.js';

export default class PlatformStop extends BaseCommand {
  static override summary = "Stop the platform's services on this host, keeping all data";
  static override description =
    'Scales every service of the platform (apps too) to zero and waits until their containers are gone. ' +
    'Services, network, secrets and the data directory stay: `divio platform start` brings everything back.';
  static override enableJsonFlag = true;
  static override flags = {
    'data-dir': Flags.string({ description: 'the data directory of the platform (default: the one the last start used)', helpValue: 'DIR' }),
    timeout: Flags.integer({ description: 'seconds to wait for the services to stop', default: 180, min: 1 }),
  };

  async run(): Promise<StopResult> {
    const { flags } = await this.parse(PlatformStop);
    const result = await stopPlatform(this.io, { dataDir: flags['data-dir'], timeoutMs: flags.timeout * 1000 });
    this.log(
      result.alreadyStopped
        ? `The platform "${result.name}" was not running.`
        : `Stopped the platform "${result.name}"; its data stays in ${result.dataDir}.`,
    );
    return result;
  }
}
