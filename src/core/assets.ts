/** Files shipped with the package (templates/, boilerplates/), found relative to the installed code. */
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

// dist/core/assets.js (and src/core/assets.ts under vitest) sit two levels below the package root.
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function templatePath(name: string): string {
  return join(PACKAGE_ROOT, 'templates', name);
}

export function boilerplatesDir(): string {
  return join(PACKAGE_ROOT, 'boilerplates');
}
