import { BaseCommand } from '../../../base-command.js';
import { listUsers, type UsersResult } from '../../../services/auth/users.js';

export default class PlatformUsersList extends BaseCommand {
  static override summary = 'List the platform users, whether they are enabled, and their live tokens (operator only)';
  static override enableJsonFlag = true;

  async run(): Promise<UsersResult> {
    await this.parse(PlatformUsersList);
    const result = await listUsers();
    const width = Math.max(4, ...result.users.map((u) => u.name.length));
    this.log(`${'NAME'.padEnd(width)}  ${'ROLE'.padEnd(8)}  ${'STATE'.padEnd(8)}  TOKENS  LAST USED`);
    for (const user of result.users) {
      const role = user.operator ? 'operator' : 'user';
      const state = user.disabledAt ? 'disabled' : 'enabled';
      this.log(`${user.name.padEnd(width)}  ${role.padEnd(8)}  ${state.padEnd(8)}  ${String(user.liveTokens).padStart(6)}  ${user.lastUsedAt ?? 'never'}`);
    }
    return result;
  }
}
