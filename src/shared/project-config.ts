/** .divio/config.json: which app on which platform endpoint. Committed; never holds secrets. */
import { z } from 'zod';

export const SLUG_PATTERN = /^[a-z][a-z0-9-]{1,62}$/;
export const slugSchema = z
  .string()
  .regex(SLUG_PATTERN, 'a slug: 2-63 characters, lower-case letters, digits and "-", starting with a letter');

export const projectConfigSchema = z.strictObject({
  app: slugSchema,
  /** The platform API this app lives on; absent until the app is registered. */
  endpoint: z.url().optional(),
});

export type ProjectConfig = z.output<typeof projectConfigSchema>;

export const PROJECT_CONFIG_PATH = '.divio/config.json';
/** Per-checkout state (chosen port); git-ignored. */
export const LOCAL_STATE_PATH = '.divio/local.json';
