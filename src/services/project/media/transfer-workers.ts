/**
 * The per-byte work of a sync runs in worker threads: receiving, hashing and writing large
 * downloads, and hashing large files before they are uploaded. One Node thread doing that for
 * several large files at once is busy the whole time (the HTTP parser, sha256 and MD5, and the
 * garbage collection of every 64 KiB socket buffer), and on a small machine that thread is what a
 * sync waits for. A few workers spread it over the cores, each with its own heap; the main thread
 * keeps the plan, the signing, the retries, the verdicts and the renames.
 *
 * Workers start when the first job does and stop with the sync. A worker is referenced (keeps the
 * process alive) only while it has work.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { FileDigests, HashedFile } from './digests.js';
import type { DownloadHeaders } from './download-check.js';
import type { SignedObjectRequest } from './object-http.js';

export interface DownloadJob {
  id: number;
  request: SignedObjectRequest;
  /** The hidden temporary file to create (O_EXCL) and write. */
  temporary: string;
  /** Used when the answer has no Content-Length. */
  listedSize: number;
  partSize: number;
  idleTimeoutMs: number;
}

export interface HashJob {
  id: number;
  /** A local file, opened as digests.ts's hashFile does (never through a symlink). */
  path: string;
  md5: boolean;
  partSizes: number[];
}

export type ToWorker = { type: 'download'; job: DownloadJob } | { type: 'hash'; job: HashJob } | { type: 'cancel'; id: number };

export interface WorkerError {
  name: string;
  message: string;
  code?: string;
}

export type FromWorker =
  | { type: 'bytes'; id: number; bytes: number }
  /** A non-2xx answer: its status and the start of its body, for the main thread to read as an S3 error. */
  | { type: 'refused'; id: number; status: number; body: string }
  /** The whole body is in the temporary file; the main thread checks it and renames or removes it. */
  | { type: 'received'; id: number; headers: DownloadHeaders; bytes: number; digests: FileDigests }
  | { type: 'hashed'; id: number; hashed: HashedFile }
  /** A download's temporary file is already removed. */
  | { type: 'failed'; id: number; error: WorkerError };

export type DownloadAnswer = Extract<FromWorker, { type: 'refused' } | { type: 'received' }>;

type Answer = Extract<FromWorker, { type: 'refused' } | { type: 'received' } | { type: 'hashed' }>;

interface Pending {
  resolve(answer: Answer): void;
  reject(error: unknown): void;
  onBytes?(bytes: number): void;
}

interface PoolWorker {
  thread: Worker;
  pending: Map<number, Pending>;
}

/** At most this many workers: beyond it the store or the disk is the limit, not the client. */
const MAX_WORKERS = 4;

export class TransferWorkers {
  private readonly workers: PoolWorker[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly size = Math.max(1, Math.min(MAX_WORKERS, availableParallelism()))) {}

  /**
   * Resolves with the worker's answer once the body is in `temporary` (or the store refused);
   * rejects, with the temporary file already removed, on any failure. An abort cancels the
   * request and rejects with the signal's reason once the worker has cleaned up.
   */
  async download(job: Omit<DownloadJob, 'id'>, onBytes: (bytes: number) => void, signal?: AbortSignal): Promise<DownloadAnswer> {
    return (await this.run((id) => ({ type: 'download', job: { ...job, id } }), signal, onBytes)) as DownloadAnswer;
  }

  /** digests.ts's hashFile, in a worker. */
  async hash(path: string, options: { md5: boolean; partSizes?: readonly number[] }, signal?: AbortSignal): Promise<HashedFile> {
    const answer = await this.run((id) => ({ type: 'hash', job: { id, path, md5: options.md5, partSizes: [...(options.partSizes ?? [])] } }), signal);
    return (answer as Extract<Answer, { type: 'hashed' }>).hashed;
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.workers.splice(0);
    await Promise.all(workers.map((worker) => worker.thread.terminate()));
  }

  private run(message: (id: number) => ToWorker, signal: AbortSignal | undefined, onBytes?: (bytes: number) => void): Promise<Answer> {
    if (this.closed) return Promise.reject(new Error('the transfer workers are stopped'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.nextId++;
    const worker = this.pick();
    return new Promise<Answer>((resolve, reject) => {
      const cancel = () => worker.thread.postMessage({ type: 'cancel', id } satisfies ToWorker);
      const done = () => {
        signal?.removeEventListener('abort', cancel);
        worker.pending.delete(id);
        if (worker.pending.size === 0) worker.thread.unref();
      };
      worker.pending.set(id, {
        onBytes,
        resolve: (answer) => {
          done();
          resolve(answer);
        },
        reject: (error) => {
          done();
          reject(signal?.aborted ? signal.reason : error);
        },
      });
      worker.thread.ref();
      signal?.addEventListener('abort', cancel, { once: true });
      worker.thread.postMessage(message(id));
    });
  }

  /** An idle worker, a new one while there are fewer than `size`, else the least busy. */
  private pick(): PoolWorker {
    const idle = this.workers.find((worker) => worker.pending.size === 0);
    if (idle) return idle;
    if (this.workers.length < this.size) return this.start();
    return this.workers.reduce((least, worker) => (worker.pending.size < least.pending.size ? worker : least));
  }

  private start(): PoolWorker {
    // Not the parent's flags: some are refused in a worker (e.g. --input-type without its -e), and it needs none.
    const worker: PoolWorker = { thread: new Worker(workerEntry(), { execArgv: [] }), pending: new Map() };
    worker.thread.on('message', (message: FromWorker) => {
      const pending = worker.pending.get(message.id);
      if (!pending) return;
      if (message.type === 'bytes') pending.onBytes?.(message.bytes);
      else if (message.type === 'failed') pending.reject(Object.assign(new Error(message.error.message), message.error));
      else pending.resolve(message);
    });
    // A worker that dies takes its jobs with it; the next ones go to a fresh worker.
    const lost = (error: Error) => {
      const index = this.workers.indexOf(worker);
      if (index >= 0) this.workers.splice(index, 1);
      for (const pending of [...worker.pending.values()]) pending.reject(error);
    };
    worker.thread.on('error', (error) => lost(new Error(`a transfer worker failed: ${error.message}`)));
    worker.thread.on('exit', (code) => lost(new Error(`a transfer worker stopped (exit code ${code})`)));
    this.workers.push(worker);
    return worker;
  }
}

/**
 * The worker's compiled module. Under the test runner this module is loaded from its TypeScript
 * source, which a worker thread cannot load (the runner's transform does not reach it): the built
 * copy in dist/ is used instead (`npm test` builds first).
 */
function workerEntry(): URL {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new URL('./transfer-worker.js', here);
  const built = here.replace(/\/src\/((?:[^/]+\/)*)[^/]+\.ts$/, '/dist/$1transfer-worker.js');
  if (built === here) throw new Error(`cannot tell where the built transfer worker is for ${here}`);
  return new URL(built);
}
