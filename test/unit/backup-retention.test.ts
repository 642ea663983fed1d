import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { backupsToPrune, DEFAULT_RETENTION, type RetentionCandidate, type RetentionPolicy } from '../../src/platform/api/data/backup-retention.js';
import { BACKUP_REASONS } from '../../src/shared/api/schemas.js';

const NOW = new Date('2026-12-03T12:00:00Z');
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const at = (msAgo: number) => new Date(NOW.getTime() - msAgo);
let seq = 0;
const b = (reason: RetentionCandidate['reason'], msAgo: number): RetentionCandidate => ({ id: (seq++).toString(16).padStart(16, '0'), reason, createdAt: at(msAgo) });
const pruned = (backups: RetentionCandidate[], policy: RetentionPolicy = DEFAULT_RETENTION) => backupsToPrune(backups, policy, NOW).map((d) => d.id);

describe('backup retention', () => {
  it('four pushes in a row keep the pre-push original (all younger than keepDays)', () => {
    const original = b('import', 4 * 60_000);
    const later = [b('import', 3 * 60_000), b('import', 2 * 60_000), b('import', 60_000)];
    expect(pruned([original, ...later])).toEqual([]);
  });

  it('count alone (keepDays 0) prunes the oldest beyond keep, naming why', () => {
    const original = b('import', 4 * 60_000);
    const later = [b('import', 3 * 60_000), b('import', 2 * 60_000), b('import', 60_000)];
    const decisions = backupsToPrune([original, ...later], { keep: 3, keepDays: 0, max: 10 }, NOW);
    expect(decisions).toEqual([{ id: original.id, why: 'older than 0 days and not among the newest 3' }]);
  });

  it('keeps the newest keep whatever their age, and prunes older ones beyond them', () => {
    const old = [b('import', 30 * DAY), b('import', 20 * DAY), b('import', 10 * DAY), b('import', 9 * DAY), b('import', 8 * DAY)];
    expect(pruned(old)).toEqual([old[1]!.id, old[0]!.id]);
  });

  it('the newest backup of each reason is never pruned, even when old and beyond the count', () => {
    const scheduled = b('scheduled', 40 * DAY);
    const restore = b('restore', 30 * DAY);
    const imports = [b('import', 20 * DAY), b('import', 15 * DAY), b('import', 12 * DAY), b('import', 11 * DAY)];
    const result = pruned([scheduled, restore, ...imports], { keep: 2, keepDays: 7, max: 3 });
    expect(result).not.toContain(scheduled.id);
    expect(result).not.toContain(restore.id);
    expect(result.sort()).toEqual([imports[0]!.id, imports[1]!.id].sort());
  });

  it('caps young backups at max, dropping the oldest of them with the reason', () => {
    const many = Array.from({ length: 14 }, (_, i) => b('import', (14 - i) * 60_000));
    const decisions = backupsToPrune(many, DEFAULT_RETENTION, NOW);
    expect(decisions.map((d) => d.id)).toEqual([many[3]!.id, many[2]!.id, many[1]!.id, many[0]!.id]);
    expect(decisions[0]!.why).toBe('more than 10 backups are younger than 7 days');
  });

  it('a backup exactly keepDays old counts as old; ties in time are ordered by id', () => {
    const edge = b('manual', 7 * DAY);
    const rest = [b('manual', 3 * HOUR), b('manual', 2 * HOUR), b('manual', HOUR)];
    expect(pruned([edge, ...rest], { keep: 3, keepDays: 7, max: 10 })).toEqual([edge.id]);
    const same = [b('import', HOUR), b('import', HOUR)];
    expect(pruned(same, { keep: 1, keepDays: 0, max: 1 })).toEqual([same[1]!.id]);
  });

  it('property: never prunes the newest backup, nor the newest of any reason; keeps at least min(keep, n); never keeps more young ones than max unless protected', () => {
    const reason = fc.constantFrom(...BACKUP_REASONS);
    const candidate = fc.record({ reason, agoMs: fc.integer({ min: 0, max: 60 * DAY }) });
    const policy = fc.record({ keep: fc.integer({ min: 1, max: 8 }), keepDays: fc.integer({ min: 0, max: 30 }), max: fc.integer({ min: 1, max: 12 }) });
    fc.assert(
      fc.property(fc.array(candidate, { maxLength: 30 }), policy, (items, p) => {
        const backups = items.map((item, i) => ({ id: i.toString(16).padStart(16, '0'), reason: item.reason, createdAt: at(item.agoMs) }));
        const dropped = new Set(pruned(backups, p));
        const sorted = [...backups].sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || (x.id < y.id ? -1 : 1));
        const protectedIds = new Set<string>();
        for (const r of BACKUP_REASONS) {
          const newest = sorted.find((x) => x.reason === r);
          if (newest) protectedIds.add(newest.id);
        }
        for (const x of sorted.slice(0, p.keep)) protectedIds.add(x.id);
        for (const id of protectedIds) expect(dropped.has(id)).toBe(false);
        const kept = backups.length - dropped.size;
        expect(kept).toBeGreaterThanOrEqual(Math.min(p.keep, backups.length));
        expect(kept).toBeLessThanOrEqual(Math.max(p.max, protectedIds.size));
        // Whatever is dropped is old, or young beyond the cap.
        for (const x of backups) {
          if (!dropped.has(x.id)) continue;
          const young = x.createdAt.getTime() > NOW.getTime() - p.keepDays * DAY;
          if (young) expect(kept).toBeGreaterThanOrEqual(p.max);
        }
      }),
      { numRuns: 500 },
    );
  });
});
