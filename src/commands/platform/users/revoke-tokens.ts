import { Args } from '@oclif/core';
import { BaseCommand } from '../../../base-command.js';
import { revokeUserTokens } from '../../../services/auth/users.js';
import type { TokensRevoked } from '../../../shared/api/schemas.js';

export default class PlatformUsersRevokeTokens extends BaseCommand {
  static override summary = "Revoke every token of a user at once (operator only)";
  static override description =
    'Use it when a token leaked. The user can no longer log in until you issue a new one: `divio platform users issue-token NAME`.';
  static override enableJsonFlag = true;
  static override args = { name: Args.string({ description: 'user name', required: true }) };

  async run(): Promise<TokensRevoked> {
    const { args } = await this.parse(PlatformUsersRevokeTokens);
    const result = await revokeUserTokens(args.name);
    this.log(`Revoked ${result.revoked} token${result.revoked === 1 ? '' : 's'} of ${result.user}. Issue a new one with: divio platform users issue-token ${result.user}`);
    return result;
  }
}
