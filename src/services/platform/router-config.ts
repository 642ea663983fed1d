/**
 * The router's nginx configuration, rendered from templates/platform/nginx.conf: `{{key}}` is
 * replaced by a value, `{{#key}}…{{/key}}` is kept only when the flag is set. Values are validated
 * names (settings), never free text, so nothing can inject directives.
 */
import { readFile } from 'node:fs/promises';
import { templatePath } from '../../core/assets.js';
import { DOMAIN_PATTERN, NAME_PATTERN, type PlatformSettings } from './settings.js';

export const ROUTER_TEMPLATE = 'platform/nginx.conf';
/** Where DATA/router/apps is mounted in the router: one `*.conf` per environment. */
export const ROUTER_APPS_DIR = '/etc/nginx/divio-apps';

export interface RouterValues {
  name: string;
  domain: string;
  /** Route to the embedded media store (s3.DOMAIN). */
  s3: boolean;
  /** Route /v2/ to the embedded registry. */
  registry: boolean;
  /** nginx server blocks for apps, rendered in the marked place (a later part fills it). */
  appRoutes?: string;
}

export function routerValues(settings: PlatformSettings, appRoutes?: string): RouterValues {
  return {
    name: settings.name,
    domain: settings.domain,
    s3: !settings.external.media,
    registry: !settings.external.registry,
    appRoutes,
  };
}

export function renderTemplate(template: string, values: Record<string, string | boolean | undefined>): string {
  let text = template.replace(/\{\{#(\w+)\}\}\n?([\s\S]*?)\{\{\/\1\}\}\n?/g, (_match, key: string, body: string) => {
    if (!(key in values)) throw new Error(`the template has a section {{#${key}}} with no value`);
    return values[key] ? body : '';
  });
  text = text.replace(/\{\{(\w+)\}\}/g, (_match, key: string) => {
    const value = values[key];
    if (typeof value !== 'string') throw new Error(`the template needs a value for {{${key}}}`);
    return value;
  });
  return text;
}

export function renderRouterConfigFrom(template: string, values: RouterValues): string {
  if (!NAME_PATTERN.test(values.name)) throw new Error(`invalid platform name ${values.name}`);
  if (!DOMAIN_PATTERN.test(values.domain)) throw new Error(`invalid domain ${values.domain}`);
  const appRoutes = values.appRoutes?.trim() ? values.appRoutes.trimEnd() : '# (none)';
  return renderTemplate(template, { ...values, appRoutes, domainRegex: domainRegex(values.domain) });
}

/**
 * The domain as a PCRE fragment for an nginx `server_name ~…` pattern: a validated domain holds only
 * letters, digits, "-" and ".", so escaping the dots is all it takes.
 */
export function domainRegex(domain: string): string {
  if (!DOMAIN_PATTERN.test(domain)) throw new Error(`invalid domain ${domain}`);
  return domain.replace(/\./g, '\\.');
}

export async function renderRouterConfig(values: RouterValues): Promise<string> {
  return renderRouterConfigFrom(await readFile(templatePath(ROUTER_TEMPLATE), 'utf8'), values);
}
