/** `platform start`'s backup settings: stored, kept across starts, passed to the API's runtime config; `off` stops the schedule. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runtimeConfigSchema } from '../../src/platform/runtime-config.js';
import { buildRuntimeConfig } from '../../src/services/platform/config.js';
import { resolveSettings, writeSettings } from '../../src/services/platform/settings.js';

const scratch = mkdtempSync(join(tmpdir(), 'divio-backup-settings-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const operator = { tokenId: 'abcdefghij012345', tokenHash: 'a'.repeat(64) };

describe('backup settings', () => {
  it('default to keep 3, 7 days, at most 10, no schedule', async () => {
    const { settings } = await resolveSettings(join(scratch, 'a'), {});
    const config = runtimeConfigSchema.parse(buildRuntimeConfig({ ...settings, operator }, '1.0.0'));
    expect(config.backups).toEqual({ keep: 3, keepDays: 7, max: 10 });
  });

  it('a schedule and retention are stored, kept by a start without the flags, and off removes the schedule', async () => {
    const dir = join(scratch, 'b');
    const first = await resolveSettings(dir, { backupSchedule: '03:30', backupsKeepDays: 14, backupsMax: 20, backupsKeep: 5 });
    expect(first.settings).toMatchObject({ backupSchedule: '03:30', backupsKeepDays: 14, backupsMax: 20, backupsKeep: 5 });
    await writeSettings(dir, first.settings);
    const again = await resolveSettings(dir, {});
    expect(again.settings).toMatchObject({ backupSchedule: '03:30', backupsKeepDays: 14, backupsMax: 20, backupsKeep: 5 });
    const config = runtimeConfigSchema.parse(buildRuntimeConfig({ ...again.settings, operator }, '1.0.0'));
    expect(config.backups).toEqual({ keep: 5, keepDays: 14, max: 20, schedule: '03:30' });
    const moved = await resolveSettings(dir, { backupSchedule: '23:59:30' });
    expect(moved.settings.backupSchedule).toBe('23:59:30');
    const off = await resolveSettings(dir, { backupSchedule: 'off' });
    expect(off.settings).not.toHaveProperty('backupSchedule');
    expect(off.settings.backupsKeepDays).toBe(14);
    expect(runtimeConfigSchema.parse(buildRuntimeConfig({ ...off.settings, operator }, '1.0.0')).backups).toEqual({ keep: 5, keepDays: 14, max: 20 });
  });

  it('refuses a time that is not HH:MM[:SS] and retention out of range, naming the value', async () => {
    const dir = join(scratch, 'c');
    for (const bad of ['3:30', '25:00', 'daily', '03:30 UTC']) {
      await expect(resolveSettings(dir, { backupSchedule: bad })).rejects.toThrow(new RegExp(`"${bad}" is not a time of day`));
    }
    await expect(resolveSettings(dir, { backupsKeepDays: -1 })).rejects.toThrow(/-1 is not a number of days/);
    await expect(resolveSettings(dir, { backupsMax: 0 })).rejects.toThrow(/0 is not a number of backups to keep at most/);
  });
});
