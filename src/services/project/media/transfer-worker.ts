/**
 * A transfer worker thread (see transfer-workers.ts). A download job sends the signed GetObject
 * it is handed, hashes the body as it arrives and writes it to the hidden temporary file it is
 * named (O_EXCL, never following a link); the verdict (digests against the headers) and the
 * rename stay on the main thread, and whatever fails, the temporary file is removed before the
 * failure is reported. A hash job is digests.ts's hashFile.
 */
import { closeSync, constants, openSync, unlinkSync, writeSync, writevSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { parentPort } from 'node:worker_threads';
import { localhostLookup } from '../../../core/localhost-lookup.js';
import { ContentHasher, hashFile, MIB } from './digests.js';
import { downloadExpectation, downloadHeaders, errorBodyOf, hasherOptions } from './download-check.js';
import type { DownloadJob, FromWorker, HashJob, ToWorker, WorkerError } from './transfer-workers.js';

/** Network chunks (64 KiB) are gathered into one write of a few MiB. */
const WRITE_BATCH = 4 * MIB;

const port = parentPort;
if (!port) throw new Error('transfer-worker.js runs as a worker thread');

const agentOptions = { keepAlive: true, lookup: localhostLookup };
const agents = { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) };
const running = new Map<number, ClientRequest | AbortController>();

port.on('message', (message: ToWorker) => {
  if (message.type === 'download') download(message.job);
  else if (message.type === 'hash') hash(message.job);
  else cancel(message.id);
});

function cancel(id: number): void {
  const job = running.get(id);
  const reason = Object.assign(new Error('the job was cancelled'), { name: 'AbortError' });
  if (job instanceof AbortController) job.abort(reason);
  else job?.destroy(reason);
}

function hash(job: HashJob): void {
  const controller = new AbortController();
  running.set(job.id, controller);
  hashFile(job.path, { md5: job.md5, partSizes: job.partSizes, signal: controller.signal }).then(
    (hashed) => port?.postMessage({ type: 'hashed', id: job.id, hashed } satisfies FromWorker),
    (error: unknown) => port?.postMessage({ type: 'failed', id: job.id, error: serialise(error) } satisfies FromWorker),
  ).finally(() => running.delete(job.id));
}

function download(job: DownloadJob): void {
  const post = (message: FromWorker) => port?.postMessage(message);
  let fd: number | undefined;
  let settled = false;
  const settle = (message: FromWorker) => {
    if (settled) return;
    settled = true;
    running.delete(job.id);
    post(message);
  };
  const fail = (error: unknown) => {
    if (settled) return;
    if (fd !== undefined) {
      closeQuietly(fd);
      fd = undefined;
      try {
        unlinkSync(job.temporary);
      } catch {
        // Gone already; a leftover would be swept by the next sync (its name carries our pid).
      }
    }
    settle({ type: 'failed', id: job.id, error: serialise(error) });
  };

  const https = job.request.protocol === 'https:';
  const request = (https ? httpsRequest : httpRequest)({ ...job.request, agent: https ? agents.https : agents.http });
  running.set(job.id, request);
  request.setTimeout(job.idleTimeoutMs, () => request.destroy(Object.assign(new Error('the request timed out'), { name: 'TimeoutError' })));
  request.once('error', fail);
  request.once('response', (response: IncomingMessage) => {
    const status = response.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      errorBodyOf(response).then((body) => settle({ type: 'refused', id: job.id, status, body }), fail);
      return;
    }
    const headers = downloadHeaders(response.headers);
    const hasher = new ContentHasher(hasherOptions(downloadExpectation(headers, job.listedSize, job.partSize)));
    try {
      fd = openSync(job.temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
    } catch (error) {
      response.destroy();
      fail(error);
      return;
    }
    let batch: Buffer[] = [];
    let batched = 0;
    const flush = () => {
      // This thread does nothing else: a blocking write costs no other transfer its turn.
      writeAllSync(fd as number, batch, batched);
      post({ type: 'bytes', id: job.id, bytes: batched });
      batch = [];
      batched = 0;
    };
    response.on('data', (chunk: Buffer) => {
      hasher.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched < WRITE_BATCH) return;
      try {
        flush();
      } catch (error) {
        response.destroy(error as Error);
      }
    });
    response.once('error', fail);
    response.once('close', () => {
      if (!response.complete) return fail(Object.assign(new Error('the connection closed before the whole object arrived'), { code: 'ECONNRESET' }));
      try {
        if (batched > 0) flush();
        closeSync(fd as number);
        fd = undefined;
      } catch (error) {
        return fail(error);
      }
      settle({ type: 'received', id: job.id, headers, bytes: hasher.bytes, digests: hasher.digest() });
    });
  });
  request.end();
}

function writeAllSync(fd: number, chunks: Buffer[], total: number): void {
  const written = writevSync(fd, chunks);
  if (written === total) return;
  // A short write (rare on a regular file): the rest one chunk at a time.
  let skip = written;
  for (const chunk of chunks) {
    let offset = Math.min(skip, chunk.length);
    skip -= offset;
    while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}

function serialise(error: unknown): WorkerError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const code = (error as NodeJS.ErrnoException).code;
  return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) };
}
