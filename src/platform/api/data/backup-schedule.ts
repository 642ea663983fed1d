/**
 * The daily backup of live: a time of day (UTC) at which the API takes a backup of every live
 * environment. A run missed while the API was down is made up once at start (not once per missed
 * day). The clock and the timer are injected, so the logic is tested without waiting a day.
 *
 * An environment is due when its newest scheduled backup (or, without one, its creation) is older
 * than the most recent scheduled time: so a restart after the run changes nothing, a restart after
 * a missed run takes one backup, and an environment made after today's time waits for tomorrow.
 */

export interface DailyTime {
  hour: number;
  minute: number;
  second: number;
}

const DAILY_TIME = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/;
const DAY_MS = 24 * 60 * 60 * 1000;

/** `HH:MM` or `HH:MM:SS`, UTC; undefined when it is not one. */
export function parseDailyTime(text: string): DailyTime | undefined {
  const match = DAILY_TIME.exec(text);
  if (!match) return undefined;
  return { hour: Number(match[1]), minute: Number(match[2]), second: Number(match[3] ?? 0) };
}

export function formatDailyTime(time: DailyTime): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(time.hour)}:${pad(time.minute)}${time.second ? `:${pad(time.second)}` : ''}`;
}

/** The most recent scheduled instant at or before `now`. */
export function lastDue(now: Date, time: DailyTime): Date {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), time.hour, time.minute, time.second);
  return new Date(today <= now.getTime() ? today : today - DAY_MS);
}

/** The first scheduled instant after `now`. */
export function nextDue(now: Date, time: DailyTime): Date {
  return new Date(lastDue(now, time).getTime() + DAY_MS);
}

export function isDue(target: { lastScheduled: Date | null; since: Date }, now: Date, time: DailyTime): boolean {
  return (target.lastScheduled ?? target.since).getTime() < lastDue(now, time).getTime();
}

export interface ScheduleTarget {
  /** For the log: app and environment. */
  name: string;
  /** Newest scheduled backup, if any. */
  lastScheduled: Date | null;
  /** When the environment was made. */
  since: Date;
}

export interface Timer {
  cancel(): void;
}

export interface BackupSchedulerDeps<T extends ScheduleTarget> {
  time: DailyTime;
  targets: () => Promise<T[]>;
  take: (target: T) => Promise<void>;
  log: (line: string) => void;
  now?: () => Date;
  setTimer?: (run: () => void, delayMs: number) => Timer;
}

/** setTimeout's longest delay; a longer wait is done in steps (the schedule is daily, so never needed). */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class BackupScheduler<T extends ScheduleTarget> {
  private timer: Timer | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly now: () => Date;
  private readonly setTimer: (run: () => void, delayMs: number) => Timer;

  constructor(private readonly deps: BackupSchedulerDeps<T>) {
    this.now = deps.now ?? (() => new Date());
    this.setTimer =
      deps.setTimer ??
      ((run, delayMs) => {
        const handle = setTimeout(run, delayMs);
        // The timer never keeps the process alive: shutting down is not waiting for tomorrow's backup.
        handle.unref();
        return { cancel: () => clearTimeout(handle) };
      });
  }

  /** Makes up a missed run now, then waits for each scheduled time. */
  start(): Promise<void> {
    this.stopped = false;
    return this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Resolves when the current run (if any) is over. */
  async idle(): Promise<void> {
    await this.running;
  }

  /** Back up every target that is due now; one failure does not stop the others. */
  async runDue(): Promise<number> {
    const now = this.now();
    let taken = 0;
    let targets: T[];
    try {
      targets = await this.deps.targets();
    } catch (error) {
      this.deps.log(`scheduled backups: could not list the environments: ${describe(error)}`);
      return 0;
    }
    for (const target of targets) {
      if (this.stopped) break;
      if (!isDue(target, now, this.deps.time)) continue;
      try {
        await this.deps.take(target);
        taken++;
      } catch (error) {
        this.deps.log(`scheduled backup of ${target.name} failed: ${describe(error)}; the next scheduled time tries again`);
      }
    }
    return taken;
  }

  private tick(): Promise<void> {
    this.running = (async () => {
      await this.runDue();
      this.arm();
    })();
    return this.running;
  }

  private arm(): void {
    if (this.stopped) return;
    const now = this.now();
    // A timer that fires a little early finds nothing due and arms again for the same time.
    const delay = Math.min(Math.max(nextDue(now, this.deps.time).getTime() - now.getTime(), 0), MAX_DELAY_MS);
    this.timer = this.setTimer(() => void this.tick(), delay);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
