import { describe, expect, it } from 'vitest';
import { BackupScheduler, isDue, lastDue, nextDue, parseDailyTime, type ScheduleTarget } from '../../src/platform/api/data/backup-schedule.js';

const time = parseDailyTime('03:30')!;

describe('daily backup schedule', () => {
  it('parses HH:MM and HH:MM:SS (UTC), refuses anything else', () => {
    expect(parseDailyTime('03:30')).toEqual({ hour: 3, minute: 30, second: 0 });
    expect(parseDailyTime('23:59:59')).toEqual({ hour: 23, minute: 59, second: 59 });
    for (const bad of ['3:30', '24:00', '12:60', '12:00:60', 'noon', '', '12:00 ', '0330']) expect(parseDailyTime(bad), bad).toBeUndefined();
  });

  it('lastDue and nextDue around the scheduled time and midnight', () => {
    expect(lastDue(new Date('2026-12-03T03:29:59Z'), time).toISOString()).toBe('2026-12-02T03:30:00.000Z');
    expect(lastDue(new Date('2026-12-03T03:30:00Z'), time).toISOString()).toBe('2026-12-03T03:30:00.000Z');
    expect(nextDue(new Date('2026-12-03T03:30:00Z'), time).toISOString()).toBe('2026-12-04T03:30:00.000Z');
    expect(nextDue(new Date('2026-12-31T23:00:00Z'), time).toISOString()).toBe('2027-01-01T03:30:00.000Z');
  });

  it('due when the newest scheduled backup (or the environment itself) is older than the last scheduled time', () => {
    const now = new Date('2026-12-03T10:00:00Z');
    expect(isDue({ lastScheduled: new Date('2026-12-03T03:30:05Z'), since: new Date('2026-01-01Z') }, now, time)).toBe(false);
    expect(isDue({ lastScheduled: new Date('2026-12-02T03:30:05Z'), since: new Date('2026-01-01Z') }, now, time)).toBe(true);
    // Made after today's time: waits for tomorrow; made before, with no backup yet: due.
    expect(isDue({ lastScheduled: null, since: new Date('2026-12-03T05:00:00Z') }, now, time)).toBe(false);
    expect(isDue({ lastScheduled: null, since: new Date('2026-12-03T01:00:00Z') }, now, time)).toBe(true);
  });

  /** A fake clock and timer: the scheduler's only view of time. */
  function harness(start: string, targets: (ScheduleTarget & { id: string })[]) {
    let now = new Date(start);
    const timers: { at: number; run: () => void; cancelled: boolean }[] = [];
    const taken: string[] = [];
    const scheduler = new BackupScheduler({
      time,
      now: () => now,
      setTimer: (run, delayMs) => {
        const timer = { at: now.getTime() + delayMs, run, cancelled: false };
        timers.push(timer);
        return { cancel: () => (timer.cancelled = true) };
      },
      targets: async () => targets,
      take: async (target) => {
        if (target.id === 'broken') throw new Error('disk full');
        taken.push(target.id);
        target.lastScheduled = now;
      },
      log: () => undefined,
    });
    const pending = () => timers.filter((t) => !t.cancelled);
    /** Move the clock to the next timer and fire it. */
    const fireNext = async () => {
      const timer = pending().sort((a, b) => a.at - b.at)[0]!;
      timer.cancelled = true;
      now = new Date(timer.at);
      timer.run();
      await scheduler.idle();
    };
    return { scheduler, taken, pending, fireNext, setNow: (iso: string) => (now = new Date(iso)) };
  }

  it('a run missed while the API was down is made up once at start, then the timer waits for the next time', async () => {
    const env = { id: 'a', name: 'a/live', since: new Date('2026-11-01Z'), lastScheduled: new Date('2026-11-28T03:30:01Z') };
    const h = harness('2026-12-03T10:00:00Z', [env]);
    await h.scheduler.start();
    // Five days missed: one backup, not five.
    expect(h.taken).toEqual(['a']);
    expect(h.pending()).toHaveLength(1);
    expect(new Date(h.pending()[0]!.at).toISOString()).toBe('2026-12-04T03:30:00.000Z');
    await h.fireNext();
    expect(h.taken).toEqual(['a', 'a']);
    expect(new Date(h.pending()[0]!.at).toISOString()).toBe('2026-12-05T03:30:00.000Z');
  });

  it('a restart after the day\'s run takes nothing; a timer firing early takes nothing and re-arms for the same time', async () => {
    const env = { id: 'a', name: 'a/live', since: new Date('2026-11-01Z'), lastScheduled: new Date('2026-12-03T03:30:02Z') };
    const h = harness('2026-12-03T10:00:00Z', [env]);
    await h.scheduler.start();
    expect(h.taken).toEqual([]);
    // The timer fires 5 ms early (timers may): nothing is due yet.
    const timer = h.pending()[0]!;
    timer.cancelled = true;
    h.setNow(new Date(timer.at - 5).toISOString());
    timer.run();
    await h.scheduler.idle();
    expect(h.taken).toEqual([]);
    expect(new Date(h.pending()[0]!.at).toISOString()).toBe('2026-12-04T03:30:00.000Z');
    await h.fireNext();
    expect(h.taken).toEqual(['a']);
  });

  it('one failing environment does not stop the others, and is tried again at the next time', async () => {
    const since = new Date('2026-11-01Z');
    const broken = { id: 'broken', name: 'b/live', since, lastScheduled: null };
    const fine = { id: 'fine', name: 'f/live', since, lastScheduled: null };
    const h = harness('2026-12-03T10:00:00Z', [broken, fine]);
    await h.scheduler.start();
    expect(h.taken).toEqual(['fine']);
    expect(h.pending()).toHaveLength(1);
  });

  it('stop cancels the timer', async () => {
    const h = harness('2026-12-03T10:00:00Z', []);
    await h.scheduler.start();
    expect(h.pending()).toHaveLength(1);
    h.scheduler.stop();
    expect(h.pending()).toHaveLength(0);
  });
});
