/**
 * divio.yaml: the app manifest. One schema, used by the CLI (local environment) and the platform
 * (builder, runtime), so both read a project the same way.
 */
import { z } from 'zod';

export const MANIFEST_FILE = 'divio.yaml';
export const SUPPORTED_POSTGRES_VERSIONS = [13, 14, 15, 16, 17] as const;

const urlPath = z
  .string()
  .regex(/^\/[A-Za-z0-9._~\-/]*$/, 'a URL path starting with "/" (letters, digits, . _ ~ - /)');

const shellCommand = z.string().trim().min(1, 'a non-empty command');

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
});

export type Manifest = z.output<typeof manifestSchema>;
export type ManifestInput = z.input<typeof manifestSchema>;

export type DatabaseSpec = NonNullable<Manifest['database']>;
