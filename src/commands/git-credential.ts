import { Args } from '@oclif/core';
import { BaseCommand } from '../base-command.js';
import { gitCredentialAnswer } from '../services/auth/git-credential.js';

export default class GitCredential extends BaseCommand {
  static override summary = 'git credential helper: answers git with the stored platform token';
  static override hidden = true;
  static override args = { operation: Args.string({ required: true, options: ['get', 'store', 'erase'] }) };

  async run(): Promise<void> {
    const { args } = await this.parse(GitCredential);
    if (args.operation !== 'get') return;
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    process.stdout.write(await gitCredentialAnswer(Buffer.concat(chunks).toString('utf8')));
  }
}
