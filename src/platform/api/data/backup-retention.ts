/**
 * Which backups of an environment to drop, by age and count. The rule, for the backups of one
 * environment (newest first by creation time, then id):
 *
 * 1. The newest backup of each reason (before an import, before a restore, before a release,
 *    scheduled, manual) is always kept. So the newest copy taken before a push or a restore is
 *    never pruned by the operation that follows it, nor by a scheduled run; only a later backup of
 *    the same reason can replace it, and the operation that makes that one names what it prunes.
 * 2. The newest `keep` backups are kept, whatever their age.
 * 3. Every other backup younger than `keepDays` days is kept, newest first, while fewer than `max`
 *    backups are kept in all (1 and 2 count towards `max` but are never dropped for it).
 * 4. The rest is pruned, each with the reason why, which the API passes on to the client.
 *
 * Four pushes in a row therefore keep the original database (it is younger than `keepDays`); a
 * burst of more than `max` operations in a day drops the oldest of them, and says so.
 */
import type { Backup } from '../../../shared/api/schemas.js';

export type BackupReason = Backup['reason'];

export interface RetentionPolicy {
  /** Newest backups always kept. */
  keep: number;
  /** Backups younger than this many days are kept (up to `max`). */
  keepDays: number;
  /** Most backups kept by age; the ones always kept (rule 1 and 2) may exceed it. */
  max: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = { keep: 3, keepDays: 7, max: 10 };

export interface RetentionCandidate {
  id: string;
  reason: BackupReason;
  createdAt: Date;
}

export interface PruneDecision {
  id: string;
  why: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** The backups to prune (oldest last, as they come in the list), each with why; pure. */
export function backupsToPrune(backups: readonly RetentionCandidate[], policy: RetentionPolicy, now: Date): PruneDecision[] {
  const sorted = [...backups].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const kept = new Set<string>();
  const newestOfReason = new Set<BackupReason>();
  for (const backup of sorted) {
    if (newestOfReason.has(backup.reason)) continue;
    newestOfReason.add(backup.reason);
    kept.add(backup.id);
  }
  for (const backup of sorted.slice(0, policy.keep)) kept.add(backup.id);
  const cutoff = now.getTime() - policy.keepDays * DAY_MS;
  const pruned: PruneDecision[] = [];
  for (const backup of sorted) {
    if (kept.has(backup.id)) continue;
    const young = backup.createdAt.getTime() > cutoff;
    if (young && kept.size < policy.max) {
      kept.add(backup.id);
      continue;
    }
    pruned.push({
      id: backup.id,
      why: young
        ? `more than ${policy.max} backups are younger than ${days(policy.keepDays)}`
        : `older than ${days(policy.keepDays)} and not among the newest ${policy.keep}`,
    });
  }
  return pruned;
}

function days(n: number): string {
  return n === 1 ? '1 day' : `${n} days`;
}
