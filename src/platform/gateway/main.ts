/**
 * The data gateway (the `NAME-gateway` Swarm service): app containers live on networks of their
 * own environment and reach the platform's database cluster and media store only through here.
 * It forwards TCP, so TLS-free PostgreSQL and S3 work unchanged, and it reads each PostgreSQL
 * connection's startup message first: only environment roles pass, never the cluster's admin.
 * It holds no secret and runs as an unprivileged user.
 *
 * DIVIO_GATEWAY_DATABASE=HOST:PORT and DIVIO_GATEWAY_MEDIA=HOST:PORT name the targets; either may
 * be absent (an external cluster or store is reached over the outside network, not through here).
 */
import net from 'node:net';
import { readStartup, refusal } from './pg-startup.js';
import { isEnvironmentRole } from './roles.js';

const DATABASE_PORT = 5432;
const MEDIA_PORT = 4568;
const STARTUP_TIMEOUT_MS = 10_000;

const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);

interface Target {
  host: string;
  port: number;
}

function target(variable: string): Target | undefined {
  const value = process.env[variable];
  if (!value) return undefined;
  const match = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!match) throw new Error(`${variable} must be HOST:PORT, not ${JSON.stringify(value)}`);
  return { host: match[1]!, port: Number(match[2]) };
}

/** Join two sockets; either one ending or failing ends both. */
function splice(client: net.Socket, upstream: net.Socket): void {
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
}

function forwardMedia(media: Target): net.Server {
  return net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: media.host, port: media.port, noDelay: true });
    splice(client, upstream);
  });
}

function forwardDatabase(database: Target): net.Server {
  return net.createServer({ noDelay: true }, (client) => {
    let pending = Buffer.alloc(0);
    const timer = setTimeout(() => client.destroy(), STARTUP_TIMEOUT_MS);
    const refuse = (message: string) => {
      clearTimeout(timer);
      client.removeListener('data', onData);
      client.end(refusal(message));
    };
    const onData = (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const step = readStartup(pending);
        if (step.kind === 'incomplete') return;
        if (step.kind === 'invalid') return refuse(`the gateway refused the connection: ${step.reason}`);
        if (step.kind === 'decline-encryption') {
          pending = pending.subarray(step.length);
          client.write('N');
          continue;
        }
        if (!step.cancel && !isEnvironmentRole(step.user ?? '')) {
          log(`refused a database connection for the role ${JSON.stringify(step.user ?? '')} from ${client.remoteAddress ?? '?'}`);
          return refuse(`role "${step.user ?? ''}" may not connect through the platform's gateway: apps connect as their environment's role (DATABASE_URL)`);
        }
        clearTimeout(timer);
        client.removeListener('data', onData);
        client.pause();
        const upstream = net.connect({ host: database.host, port: database.port, noDelay: true });
        upstream.write(pending);
        splice(client, upstream);
        client.resume();
        return;
      }
    };
    client.on('data', onData);
    client.on('error', () => client.destroy());
  });
}

function main(): void {
  const database = target('DIVIO_GATEWAY_DATABASE');
  const media = target('DIVIO_GATEWAY_MEDIA');
  if (!database && !media) throw new Error('nothing to forward: set DIVIO_GATEWAY_DATABASE and/or DIVIO_GATEWAY_MEDIA');
  const servers: net.Server[] = [];
  if (database) servers.push(forwardDatabase(database).listen(DATABASE_PORT, '0.0.0.0', () => log(`database: :${DATABASE_PORT} → ${database.host}:${database.port}`)));
  if (media) servers.push(forwardMedia(media).listen(MEDIA_PORT, '0.0.0.0', () => log(`media: :${MEDIA_PORT} → ${media.host}:${media.port}`)));
  const shutdown = () => {
    for (const server of servers) server.close();
    setTimeout(() => process.exit(0), 2_000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

try {
  main();
} catch (error) {
  console.error(`the gateway failed to start: ${(error as Error).message}`);
  process.exit(1);
}
