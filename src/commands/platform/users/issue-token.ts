import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../../base-command.js';
import { issueUserToken } from '../../../services/auth/users.js';
import type { IssuedToken } from '../../../shared/api/schemas.js';

export default class PlatformUsersIssueToken extends BaseCommand {
  static override summary = 'Issue a token for an existing user and print it once (operator only)';
  static override description = 'Hand it to the user, who runs `divio login --token TOKEN --endpoint URL`.';
  static override enableJsonFlag = true;
  static override args = { name: Args.string({ description: 'user name', required: true }) };
  static override flags = {
    scope: Flags.string({ description: 'read: look and clone; write: also change and push', options: ['read', 'write'], default: 'write' }),
    'expires-in': Flags.string({ description: 'lifetime, e.g. 12h, 30d, 52w (default: never expires)', helpValue: 'DURATION' }),
  };

  async run(): Promise<IssuedToken & { endpoint: string }> {
    const { args, flags } = await this.parse(PlatformUsersIssueToken);
    const issued = await issueUserToken(args.name, { scope: flags.scope as 'read' | 'write', expiresIn: flags['expires-in'] });
    const expiry = issued.info.expiresAt ? `, expires ${issued.info.expiresAt}` : '';
    this.log(`A ${issued.info.scope} token for ${args.name}${expiry} (shown only now):`);
    this.log(issued.token);
    this.log(`They log in with: divio login --endpoint ${issued.endpoint} --token TOKEN`);
    return issued;
  }
}
