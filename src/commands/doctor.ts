import { BaseCommand } from '../base-command.js';
import { runDoctor, type DoctorReport } from '../services/doctor/doctor.js';

export default class Doctor extends BaseCommand {
  static override summary = 'Check that this machine can run divio projects';
  static override description = 'Checks the Docker engine, Compose v2 and v1, git, free ports and disk space; each failing check says how to fix it. Exits non-zero when a required check fails.';
  static override enableJsonFlag = true;

  async run(): Promise<DoctorReport> {
    await this.parse(Doctor);
    const report = await runDoctor();
    const c = this.io.color;
    for (const check of report.checks) {
      const mark = check.ok ? c.green('✓') : check.required ? c.red('✗') : c.yellow('!');
      this.log(`${mark} ${check.name}: ${check.detail}`);
      if (!check.ok && check.fix) this.log(`    ${c.dim('fix:')} ${check.fix}`);
    }
    this.log(report.ok ? 'Everything divio needs is here.' : 'Some required checks failed (marked ✗).');
    if (!report.ok) process.exitCode = 1;
    return report;
  }
}
