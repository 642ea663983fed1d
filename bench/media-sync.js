#!/usr/bin/env node
// Goal: the media sync engine (`divio project push/pull media`) at most 1.0x rclone pushing and
// pulling the same data against the same embedded media store, and a no-change re-sync of 2,000
// files under 1 s and at most 1.0x `rclone copy --checksum` of the same files (process to
// process); the engine's peak RSS must not grow with file size.
//   small: 2,000 files of 4-64 KiB (random sizes and content, nested three folders deep)
//   big:   5 files of 100 MB
// Each side copies into its own bucket (prefix per round), starting from nothing: a push into an
// empty prefix with no manifest, a pull into an empty directory. Rounds are interleaved, medians
// reported. Both sides run as processes. The engine's time is taken inside its process, from
// loading the engine (and, for a push, the AWS SDK) to the end of syncMedia: Node's own start (~0.1 s) is the
// CLI's cost, paid by every command; the process's wall time is printed too. rclone runs with its
// defaults (--transfers 4, --checkers 8), path-style, region us-east-1, provider Other.
// Usage: npx tsc -p tsconfig.build.json && node bench/media-sync.js [rounds]  (needs /usr/bin/rclone)
// Prints each timing, the medians and the ratios; exits 1 if a goal is missed.
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';

// The SDK's notice that Node 20 support ends in 2027 (printed by the bench's own client) is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const execFileAsync = promisify(execFile);
const repo = join(fileURLToPath(import.meta.url), '..', '..');
const dist = (path) => pathToFileURL(join(repo, 'dist', path)).href;
const MIB = 1024 * 1024;
const REGION = 'us-east-1';

if (process.argv[2] === '--engine') await engineChild(JSON.parse(process.argv[3]));
else await main(Number(process.argv[2] ?? 3));

async function main(rounds) {
  const work = join(repo, 'bench', '.work', `media-${process.pid}`);
  const admin = { accessKeyId: 'BENCHADMIN', secretAccessKey: randomBytes(24).toString('base64url') };
  const load = [loadavg()[0]];
  let server;
  try {
    await rm(work, { recursive: true, force: true });
    console.log(`generating data in ${work} ...`);
    const small = join(work, 'data', 'small');
    const big = join(work, 'data', 'big');
    let smallBytes = 0;
    for (let i = 0; i < 2000; i++) {
      const dir = join(small, `a${i % 5}`, `b${i % 7}`, `c${i % 3}`);
      await mkdir(dir, { recursive: true });
      const body = randomBytes(randomInt(4 * 1024, 64 * 1024 + 1));
      smallBytes += body.length;
      await writeFile(join(dir, `file-${i}.bin`), body);
    }
    await mkdir(big, { recursive: true });
    for (let i = 0; i < 5; i++) await writeRandomFile(join(big, `video-${i}.bin`), 100_000_000);
    console.log(`small: 2000 files, ${(smallBytes / MIB).toFixed(1)} MiB; big: 5 x 100 MB`);

    server = await startStore(join(work, 'store'), admin);
    const remote = (bucket, prefix) => ({ endpoint: server.endpoint, region: REGION, bucket, prefix, admin });
    const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
    const client = new S3Client({ endpoint: server.endpoint, region: REGION, credentials: admin, forcePathStyle: true });
    for (const bucket of ['engine', 'rclone']) await client.send(new CreateBucketCommand({ Bucket: `bench-${bucket}` }));
    client.destroy();

    const rcloneEnv = {
      ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_') && !name.startsWith('RCLONE_'))),
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
      RCLONE_CONFIG_BENCH_ENDPOINT: server.endpoint,
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: admin.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: admin.secretAccessKey,
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
      RCLONE_CONFIG_BENCH_REGION: REGION,
    };
    const rclone = (args) => timed(() => execFileAsync('/usr/bin/rclone', ['--config', '/dev/null', ...args], { env: rcloneEnv, maxBuffer: 64 * MIB }));
    const engine = async (options) => {
      const started = process.hrtime.bigint();
      const report = await runEngine(options);
      return { processSeconds: Number(process.hrtime.bigint() - started) / 1e9, ...report };
    };

    const t = {};
    const add = (name, value) => (t[name] ??= []).push(value);
    const rss = {};
    for (let round = 0; round < rounds; round++) {
      for (const [set, source] of [['small', small], ['big', big]]) {
        const prefix = `r${round}/${set}/`;
        const manifest = join(work, 'manifests', `${set}-${round}.json`);
        const engineDown = join(work, 'down', `engine-${set}-${round}`);
        const rcloneDown = join(work, 'down', `rclone-${set}-${round}`);

        // Who goes first alternates by round, and the disk is settled (sync) before each timed step:
        // the one after a push would otherwise pay for writing back the other's data.
        const enginePush = async () => {
          await settle();
          const up = await engine({ direction: 'push', localDir: source, remote: remote('bench-engine', prefix), manifestFile: manifest });
          add(`${set} push engine`, up.engineSeconds);
          add(`${set} push engine (process)`, up.processSeconds);
          (rss[`${set} push`] ??= []).push(up.maxRssMiB);
        };
        const rclonePush = async () => {
          await settle();
          add(`${set} push rclone`, await rclone(['sync', source, `bench:bench-rclone/${prefix.slice(0, -1)}`]));
        };
        const enginePull = async () => {
          await settle();
          const down = await engine({ direction: 'pull', localDir: engineDown, remote: remote('bench-engine', prefix), manifestFile: `${manifest}.pull` });
          add(`${set} pull engine`, down.engineSeconds);
          add(`${set} pull engine (process)`, down.processSeconds);
          (rss[`${set} pull`] ??= []).push(down.maxRssMiB);
        };
        const rclonePull = async () => {
          await settle();
          add(`${set} pull rclone`, await rclone(['sync', `bench:bench-rclone/${prefix.slice(0, -1)}`, rcloneDown]));
        };
        const steps = round % 2 === 0 ? [enginePush, rclonePush, enginePull, rclonePull] : [rclonePush, enginePush, rclonePull, enginePull];
        for (const step of steps) await step();

        if (set === 'small') {
          // The no-change re-sync, each side against what it pushed, in alternating order: the
          // engine as a process (its CLI's cost) against `rclone copy --checksum`, which hashes
          // every local file and lists the bucket to find nothing to do.
          const engineAgain = async () => {
            await settle();
            const again = await engine({ direction: 'push', localDir: source, remote: remote('bench-engine', prefix), manifestFile: manifest });
            if (again.transferred !== 0) throw new Error(`the no-change re-sync transferred ${again.transferred} file(s)`);
            add('small re-sync engine', again.engineSeconds);
            add('small re-sync engine (process)', again.processSeconds);
          };
          const rcloneAgain = async () => {
            await settle();
            add('small re-sync rclone', await rclone(['copy', '--checksum', source, `bench:bench-rclone/${prefix.slice(0, -1)}`]));
          };
          for (const step of round % 2 === 0 ? [engineAgain, rcloneAgain] : [rcloneAgain, engineAgain]) await step();
        }
        await rm(engineDown, { recursive: true, force: true });
        await rm(rcloneDown, { recursive: true, force: true });
      }
      load.push(loadavg()[0]);
    }

    // Memory against file size: one 100 MB file, then one 500 MB file, each way.
    const single = join(work, 'data', 'single');
    for (const size of [100, 500]) {
      await rm(single, { recursive: true, force: true });
      await mkdir(single, { recursive: true });
      await writeRandomFile(join(single, 'one.bin'), size * 1_000_000);
      const prefix = `single-${size}/`;
      const up = await runEngine({ direction: 'push', localDir: single, remote: remote('bench-engine', prefix), manifestFile: join(work, 'manifests', `single-${size}.json`) });
      const down = await runEngine({ direction: 'pull', localDir: join(work, 'down', `single-${size}`), remote: remote('bench-engine', prefix), manifestFile: join(work, 'manifests', `single-${size}.pull.json`) });
      rss[`one ${size} MB file push`] = [up.maxRssMiB];
      rss[`one ${size} MB file pull`] = [down.maxRssMiB];
      await rm(join(work, 'down', `single-${size}`), { recursive: true, force: true });
    }

    const m = Object.fromEntries(Object.entries(t).map(([name, values]) => [name, median(values)]));
    console.log(`\n${cpus().length} cores; load average (1 min) over the run: ${load.map((value) => value.toFixed(2)).join(', ')}`);
    console.log('\nmedians of', rounds, 'rounds (s):');
    for (const [name, values] of Object.entries(t)) console.log(`  ${name.padEnd(36)} ${m[name].toFixed(2)}   [${values.map((value) => value.toFixed(2)).join(', ')}]`);
    let ok = true;
    console.log('\nratios (engine / rclone, goal <= 1.0x):');
    for (const set of ['small', 'big']) {
      for (const direction of ['push', 'pull']) {
        const ratio = m[`${set} ${direction} engine`] / m[`${set} ${direction} rclone`];
        ok &&= ratio <= 1.0;
        console.log(`  ${set} ${direction}: ${ratio.toFixed(2)}x ${ratio <= 1.0 ? 'met' : 'MISSED'}`);
      }
    }
    const resync = m['small re-sync engine'];
    const resyncRatio = m['small re-sync engine (process)'] / m['small re-sync rclone'];
    ok &&= resync < 1 && resyncRatio <= 1.0;
    console.log(`\nno-change re-sync of 2,000 files: ${resync.toFixed(2)} s in the engine (goal < 1 s: ${resync < 1 ? 'met' : 'MISSED'}), ${m['small re-sync engine (process)'].toFixed(2)} s as a process`);
    console.log(
      `  against rclone copy --checksum (${m['small re-sync rclone'].toFixed(2)} s), process to process: ${resyncRatio.toFixed(2)}x (goal <= 1.0x: ${resyncRatio <= 1.0 ? 'met' : 'MISSED'})`,
    );
    console.log('\nengine peak RSS (MiB):');
    for (const [name, values] of Object.entries(rss)) console.log(`  ${name.padEnd(24)} ${values.map((value) => value.toFixed(0)).join(', ')}`);
    process.exitCode = ok ? 0 : 1;
  } finally {
    await server?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------

/** The engine, in a child process: prints its result summary and its peak RSS. */
async function runEngine(options) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--engine', JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`the engine failed (${code}): ${output}`);
  return JSON.parse(output);
}

async function engineChild({ direction, localDir, remote, manifestFile }) {
  const started = process.hrtime.bigint();
  const { syncMedia } = await import(dist('services/project/media/sync.js'));
  const { createIO } = await import(dist('core/io.js'));
  const result = await syncMedia({
    direction,
    localDir,
    manifestFile,
    remote: { endpoint: remote.endpoint, region: remote.region, bucket: remote.bucket, prefix: remote.prefix, credentials: async () => remote.admin },
    io: createIO({ quiet: true }),
  });
  const engineSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write(JSON.stringify({ engineSeconds, transferred: result.files.transferred, maxRssMiB: await peakRssMiB() }));
}

/**
 * This process's peak RSS. Not getrusage's ru_maxrss: on Linux a child inherits its parent's
 * high-water mark across fork and exec, so it would report the bench's own size.
 */
async function peakRssMiB() {
  const status = await readFile('/proc/self/status', 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024;
}

/** Random content written a megabyte at a time, so the bench itself stays small. */
async function writeRandomFile(path, size) {
  const handle = await open(path, 'w');
  try {
    for (let written = 0; written < size; written += MIB) await handle.write(randomBytes(Math.min(MIB, size - written)));
  } finally {
    await handle.close();
  }
}

/** The embedded media store from dist/, with the OpenSSL legacy provider s3rver's listings need. */
async function startStore(root, admin) {
  const script = `
    const { startMediaServer } = await import(${JSON.stringify(dist('platform/media/s3-server.js'))});
    const server = await startMediaServer({ directory: ${JSON.stringify(join(root, 'objects'))}, address: '127.0.0.1', port: 0, adminKey: ${JSON.stringify(admin)}, log: () => {} });
    process.stdout.write(server.port + '\\n');
    process.stdin.resume();
    process.stdin.on('end', () => server.close().finally(() => process.exit(0)));`;
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    child.stdout.once('data', (chunk) => resolve(Number(String(chunk).trim())));
    child.once('exit', (code) => reject(new Error(`the media store exited (${code})`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      await exited;
    },
  };
}

/** Dirty pages written back, so that no step pays for the one before. */
async function settle() {
  await execFileAsync('sync');
}

async function timed(fn) {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function median(values) {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}
