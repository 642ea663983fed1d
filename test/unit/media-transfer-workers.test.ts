/**
 * The transfer workers on their own, against a local HTTP server: a body arrives whole with its
 * digests, a refusal comes back as status and body, and a cancel, a cut connection or a stopped
 * worker rejects the download with no temporary file left; a file is hashed as on the main thread.
 * (The worker is the built copy in dist/, which `npm test` makes first.)
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashFile } from '../../src/services/project/media/digests.js';
import { TransferWorkers, type DownloadJob } from '../../src/services/project/media/transfer-workers.js';

const MIB = 1024 * 1024;
const body = randomBytes(9 * MIB + 123);
let dir: string;
let server: Server;
let port: number;
let pool: TransferWorkers;
/** Responses held open by the slow route, ended in afterEach. */
const held: ServerResponse[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'divio-download-pool-'));
  server = createServer((request, response) => {
    if (request.url === '/whole') {
      response.writeHead(200, { 'content-length': String(body.length), etag: `"${md5(body)}"`, 'x-amz-meta-sha256': sha256(body) });
      response.end(body);
    } else if (request.url === '/refused') {
      response.writeHead(403, { 'content-type': 'application/xml' });
      response.end('<Error><Code>ExpiredToken</Code><Message>the key expired</Message></Error>');
    } else if (request.url === '/cut') {
      response.writeHead(200, { 'content-length': String(body.length) });
      response.write(body.subarray(0, 5 * MIB), () => response.socket?.destroy());
    } else {
      // Half the body, then nothing until the test ends.
      response.writeHead(200, { 'content-length': String(body.length) });
      response.write(body.subarray(0, 5 * MIB));
      held.push(response);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterEach(async () => {
  await pool?.close();
  for (const response of held.splice(0)) response.destroy();
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

function job(path: string, name: string): Omit<DownloadJob, 'id'> {
  return {
    request: { protocol: 'http:', hostname: '127.0.0.1', port: String(port), method: 'GET', path, headers: {} },
    temporary: join(dir, name),
    listedSize: body.length,
    partSize: 16 * MIB,
    idleTimeoutMs: 30_000,
  };
}

/** Resolves once at least `bytes` were reported. */
function progress(bytes: number): { onBytes: (n: number) => void; reached: Promise<void> } {
  let seen = 0;
  let reach: () => void = () => undefined;
  const reached = new Promise<void>((resolve) => (reach = resolve));
  return {
    onBytes: (n) => {
      seen += n;
      if (seen >= bytes) reach();
    },
    reached,
  };
}

describe('transfer workers', () => {
  it('receive a body whole into the temporary file, with its digests, headers and progress', async () => {
    pool = new TransferWorkers(2);
    let reported = 0;
    const answers = await Promise.all(['a', 'b', 'c'].map((name) => pool.download(job('/whole', name), (n: number) => (reported += n))));
    for (const [index, answer] of answers.entries()) {
      expect(answer).toMatchObject({ type: 'received', bytes: body.length, digests: { sha256: sha256(body) } });
      if (answer.type !== 'received') throw new Error('unreachable');
      // sha256 is there to check against: no MD5 is taken.
      expect(answer.digests.md5).toBeUndefined();
      expect(answer.headers).toEqual({ etag: `"${md5(body)}"`, contentLength: String(body.length), sha256: sha256(body) });
      expect(sha256(await readFile(join(dir, ['a', 'b', 'c'][index] as string)))).toBe(sha256(body));
    }
    expect(reported).toBe(3 * body.length);
  });

  it('hand back a refusal as its status and body, creating no file', async () => {
    pool = new TransferWorkers(1);
    const answer = await pool.download(job('/refused', 'refused'), () => undefined);
    expect(answer).toEqual({ type: 'refused', id: expect.any(Number), status: 403, body: expect.stringContaining('<Code>ExpiredToken</Code>') });
    expect(existsSync(join(dir, 'refused'))).toBe(false);
  });

  it('cancel on abort: rejected with the reason, the temporary file removed', async () => {
    pool = new TransferWorkers(1);
    const controller = new AbortController();
    const { onBytes, reached } = progress(4 * MIB);
    const download = pool.download(job('/slow', 'cancelled'), onBytes, controller.signal);
    await reached;
    expect(existsSync(join(dir, 'cancelled'))).toBe(true);
    controller.abort(new Error('interrupted by the test'));
    await expect(download).rejects.toThrow('interrupted by the test');
    expect(existsSync(join(dir, 'cancelled'))).toBe(false);
  });

  it('fail a connection cut mid-body as a connection reset, the temporary file removed', async () => {
    pool = new TransferWorkers(1);
    await expect(pool.download(job('/cut', 'cut'), () => undefined)).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(existsSync(join(dir, 'cut'))).toBe(false);
  });

  it('reject what a stopped worker had in hand, and refuse new work once closed', async () => {
    pool = new TransferWorkers(1);
    const { onBytes, reached } = progress(4 * MIB);
    const download = pool.download(job('/slow', 'stopped'), onBytes);
    await reached;
    await pool.close();
    await expect(download).rejects.toThrow(/transfer worker stopped/);
    await expect(pool.download(job('/whole', 'late'), () => undefined)).rejects.toThrow(/stopped/);
  });
});

describe('transfer workers hashing', () => {
  it('hash a file as hashFile does on the main thread (sha256, MD5, part ETags), several at once', async () => {
    pool = new TransferWorkers(2);
    const path = join(dir, 'to-hash.bin');
    await writeFile(path, body);
    const options = { md5: true, partSizes: [4 * MIB, 5 * MIB] };
    const [inWorker, again] = await Promise.all([pool.hash(path, options), pool.hash(path, { md5: false })]);
    const onMain = await hashFile(path, options);
    expect(inWorker).toEqual(onMain);
    expect(inWorker.digests).toMatchObject({ sha256: sha256(body), md5: md5(body) });
    expect(again.digests).toEqual({ sha256: sha256(body) });
  });

  it('refuse to hash through a symlink, as hashFile does', async () => {
    pool = new TransferWorkers(1);
    const link = join(dir, 'link.bin');
    await symlink(join(dir, 'to-hash.bin'), link);
    await expect(pool.hash(link, { md5: true })).rejects.toMatchObject({ name: 'NotRegularFileError', message: expect.stringMatching(/symbolic link/) });
  });
});

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}
