/**
 * divio.yaml: the app manifest. One schema, used by the CLI (local environment) and the platform
 * (builder, runtime), so both read a project the same way.
 */
import { z } from 'zod';

export const MANIFEST_FILE = 'divio.yaml';
export const SUPPORTED_POSTGRES_VERSIONS = [13, 14, 15, 16, 17] as const;
/** Redis majors whose images are among the offline base images (../shared/ci/offline-images.sh). */
export const SUPPORTED_REDIS_VERSIONS = [7] as const;
/** Names the local compose file and the platform already use for something else. */
export const RESERVED_PROCESS_NAMES = ['web', 'db', 'redis', 'release'] as const;
export const MAX_PROCESSES = 8;
export const MAX_CRON_JOBS = 20;
/** A DNS label short enough to prefix with an app slug and environment in a Swarm service name. */
const NAME_PATTERN = /^[a-z](?:[a-z0-9-]{0,22}[a-z0-9])?$/;
const NAME_ALLOWED = 'a name of 1-24 lowercase letters, digits and "-", starting with a letter, not ending with "-"';

const urlPath = z
  .string()
  .regex(/^\/[A-Za-z0-9._~\-/]*$/, 'a URL path starting with "/" (letters, digits, . _ ~ - /)');

const shellCommand = z.string().trim().min(1, 'a non-empty command');

/** One field of a 5-field cron schedule: its range and, for months and weekdays, its names. */
interface CronField {
  label: string;
  min: number;
  max: number;
  names?: readonly string[];
}

const CRON_FIELDS: readonly CronField[] = [
  { label: 'minute', min: 0, max: 59 },
  { label: 'hour', min: 0, max: 23 },
  { label: 'day of month', min: 1, max: 31 },
  { label: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  // 7 is Sunday too, as in Vixie cron.
  { label: 'day of week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];

function cronValue(text: string, field: CronField): number | undefined {
  if (/^\d{1,2}$/.test(text)) {
    const n = Number(text);
    return n >= field.min && n <= field.max ? n : undefined;
  }
  const index = field.names?.indexOf(text.toLowerCase()) ?? -1;
  return index < 0 ? undefined : index + field.min;
}

/** Why one field of a cron schedule is wrong, or undefined when it is valid. */
function cronFieldProblem(text: string, field: CronField): string | undefined {
  const range = `${field.min}-${field.max}${field.names ? ` or ${field.names[0]}-${field.names.at(-1)}` : ''}`;
  for (const item of text.split(',')) {
    const [base = '', step, extra] = item.split('/');
    if (extra !== undefined || (step !== undefined && !/^[1-9]\d{0,1}$/.test(step))) {
      return `the ${field.label} "${item}" has a step that is not a whole number from 1 to 99`;
    }
    if (base === '*') continue;
    const [from = '', to, more] = base.split('-');
    if (more !== undefined) return `the ${field.label} "${item}" is not a value or a range`;
    const low = cronValue(from, field);
    const high = to === undefined ? low : cronValue(to, field);
    if (low === undefined || high === undefined) return `the ${field.label} "${item}" is outside ${range}`;
    if (low > high) return `the ${field.label} range "${base}" runs backwards`;
    if (step !== undefined && to === undefined) return `the ${field.label} "${item}" has a step without a range or *`;
  }
  return undefined;
}

/** Why a cron schedule is not valid 5-field cron syntax, or undefined when it is. */
export function cronScheduleProblem(schedule: string): string | undefined {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== CRON_FIELDS.length) {
    return `5 fields (minute hour day-of-month month day-of-week), found ${fields.length}`;
  }
  for (const [i, text] of fields.entries()) {
    const problem = cronFieldProblem(text, CRON_FIELDS[i]!);
    if (problem) return problem;
  }
  return undefined;
}

const CRON_ALLOWED =
  'a 5-field cron schedule "MIN HOUR DAY MONTH WEEKDAY" (each *, a value, a range a-b, a step */n or a-b/n, or a list of these; months jan-dec, weekdays sun-sat), e.g. "*/15 * * * *"';

const cronSchedule = z.string().superRefine((value, ctx) => {
  const problem = cronScheduleProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: `${CRON_ALLOWED}: ${problem}` });
});

const processName = z.string();

/** A key problem is reported at the key, with the key as what was found. */
function checkNames(names: string[], ctx: z.core.$RefinementCtx<unknown>, path: PropertyKey[], kind: string): void {
  for (const name of names) {
    if (!NAME_PATTERN.test(name)) {
      ctx.addIssue({ code: 'custom', path: [...path, name], message: NAME_ALLOWED, params: { found: `the ${kind} name "${name}"` } });
    } else if ((RESERVED_PROCESS_NAMES as readonly string[]).includes(name)) {
      ctx.addIssue({
        code: 'custom',
        path: [...path, name],
        message: `a name other than ${RESERVED_PROCESS_NAMES.join(', ')} (divio uses those)`,
        params: { found: `the ${kind} name "${name}"` },
      });
    }
  }
}

const processSchema = z.strictObject({
  /** Production command: test, live, and local with --live-config. Run with `sh -c`. */
  command: shellCommand,
  /** Local development command; defaults to `command`. */
  local_command: shellCommand.optional(),
});

const processesSchema = z.record(processName, processSchema).superRefine((processes, ctx) => {
  const names = Object.keys(processes);
  if (names.length > MAX_PROCESSES) {
    ctx.addIssue({ code: 'custom', message: `at most ${MAX_PROCESSES} worker processes`, params: { found: `${names.length} processes` } });
  }
  checkNames(names, ctx, [], 'process');
});

const cronJobSchema = z.strictObject({
  name: processName.regex(NAME_PATTERN, NAME_ALLOWED),
  schedule: cronSchedule,
  /** Run with `sh -c` in a one-off container of the web image. */
  command: shellCommand,
});

const cronSchema = z.array(cronJobSchema).superRefine((jobs, ctx) => {
  if (jobs.length > MAX_CRON_JOBS) {
    ctx.addIssue({ code: 'custom', message: `at most ${MAX_CRON_JOBS} cron entries`, params: { found: `${jobs.length} entries` } });
  }
  const seen = new Set<string>();
  for (const [i, job] of jobs.entries()) {
    if (seen.has(job.name)) {
      ctx.addIssue({ code: 'custom', path: [i, 'name'], message: 'a name no other cron entry has', params: { found: `a second entry named "${job.name}"` } });
    }
    seen.add(job.name);
  }
});

/** Backing services: one kind today, a mapping so more kinds fit beside it. */
const servicesSchema = z.strictObject({
  redis: z
    .strictObject({
      version: z.literal(SUPPORTED_REDIS_VERSIONS).default(7),
    })
    .optional(),
});

export const manifestSchema = z.strictObject({
  /** The boilerplate the project was scaffolded from; informational. */
  boilerplate: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'a boilerplate name such as "express"').optional(),
  web: z.strictObject({
    /** The port the app listens on inside its container; also the PORT variable. */
    port: z.int().min(1).max(65535).default(8000),
    /** Production server command: test, live, and local with --live-config. Run with `sh -c`. */
    command: shellCommand,
    /** Local development command (auto-reload, debug server); defaults to `command`. */
    local_command: shellCommand.optional(),
    /** Path that answers 200 once the app is ready; used by `up` locally and by the runtime. */
    health_check: urlPath.default('/healthz'),
  }),
  release: z
    .strictObject({
      /** Runs once per deployment with the new image before traffic moves (migrations). */
      command: shellCommand,
    })
    .optional(),
  database: z
    .strictObject({
      engine: z.enum(['postgres']).default('postgres'),
      version: z.literal(SUPPORTED_POSTGRES_VERSIONS).default(15),
    })
    .optional(),
  media: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** URL prefix under which the app serves media files. */
      url: urlPath.default('/media/'),
    })
    .optional(),
  /** Worker processes beside `web`, from the same image, by name. */
  processes: processesSchema.optional(),
  /** Scheduled jobs: one-off runs of the web image. */
  cron: cronSchema.optional(),
  services: servicesSchema.optional(),
});

export type Manifest = z.output<typeof manifestSchema>;
export type ManifestInput = z.input<typeof manifestSchema>;

export type DatabaseSpec = NonNullable<Manifest['database']>;
export type ProcessSpec = z.output<typeof processSchema>;
export type CronJob = z.output<typeof cronJobSchema>;
export type RedisSpec = NonNullable<NonNullable<Manifest['services']>['redis']>;

/** The worker processes, in the order divio.yaml lists them. */
export function workerProcesses(manifest: Manifest): [string, ProcessSpec][] {
  return Object.entries(manifest.processes ?? {});
}
