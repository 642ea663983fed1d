/** .divio/config.json: which app on which platform endpoint. Committed; never holds secrets. */
import { z } from 'zod';

export const SLUG_PATTERN = /^[a-z][a-z0-9-]{1,62}$/;
/**
 * A new app's slug must leave room in the names made from it: `live-SLUG` is one DNS label of its
 * host name and `SLUG-live` a bucket name, both at most 63 characters. (Existing longer slugs stay
 * addressable by SLUG_PATTERN.)
 */
export const NEW_SLUG_MAX = 58;
/** Why `slug` cannot name a new app, or null. */
export function newSlugProblem(slug: string): string | null {
  if (!SLUG_PATTERN.test(slug)) return 'use 2-58 lower-case letters, digits and "-", starting with a letter (e.g. "my-shop")';
  if (slug.length > NEW_SLUG_MAX) return `it has ${slug.length} characters, more than ${NEW_SLUG_MAX}: "live-${slug}" would pass the 63 of a host name label`;
  if (slug.endsWith('-') || slug.includes('--')) return 'it may not end in "-" or hold "--" (host names and bucket names would be invalid or ambiguous)';
  return null;
}
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
