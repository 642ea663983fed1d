// The environment contract: the same variables locally, on test and on live.
const env = process.env;

function flag(value, fallback = false) {
  if (value === undefined || value === '') return fallback;
  return ['1', 'true', 'yes', 'on'].includes(String(value).trim().toLowerCase());
}

const stage = env.STAGE || 'local';
const domain = env.DOMAIN || 'localhost';

// The app's name: APP_NAME if set, otherwise the first label of DOMAIN without the "<stage>-" prefix
// the platform puts in front of it (test-shop.example.com -> shop).
function appName() {
  if (env.APP_NAME) return env.APP_NAME;
  const label = domain.split('.')[0] || 'app';
  return label.startsWith(`${stage}-`) ? label.slice(stage.length + 1) : label;
}

export const config = {
  stage,
  debug: flag(env.DEBUG),
  port: Number.parseInt(env.PORT || '8000', 10),
  databaseUrl: env.DATABASE_URL || '',
  secretKey: env.SECRET_KEY || '',
  domain,
  siteUrl: env.SITE_URL || `http://${domain}`,
  storageDsn: env.DEFAULT_STORAGE_DSN || 'file:///data/media/?url=/media/',
  appName: appName(),
  maxUploadBytes: Math.round(Number.parseFloat(env.MAX_UPLOAD_MB || '25') * 1024 * 1024),
};
