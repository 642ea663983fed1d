/**
 * Large downloads are received in worker threads. One Node thread receiving, hashing and writing
 * several large streams at once is busy the whole time (the HTTP parser, sha256, and the garbage
 * collection of every 64 KiB socket buffer), and on a small machine that thread is what a pull
 * waits for. A few workers spread that over the cores, each with its own heap; the main thread
 * keeps the plan, the signing, the retries, the verdict and the rename.
 *
 * Workers start when the first large download does and stop with the sync. A worker is referenced
 * (keeps the process alive) only while it has work.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { FileDigests } from './digests.js';
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

export type ToWorker = { type: 'download'; job: DownloadJob } | { type: 'cancel'; id: number };

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
  /** The temporary file is already removed. */
  | { type: 'failed'; id: number; error: WorkerError };

export type DownloadAnswer = Extract<FromWorker, { type: 'refused' } | { type: 'received' }>;

interface Pending {
  resolve(answer: DownloadAnswer): void;
  reject(error: unknown): void;
  onBytes(bytes: number): void;
}

interface PoolWorker {
  thread: Worker;
  pending: Map<number, Pending>;
}

/** At most this many workers: beyond it the store or the disk is the limit, not the client. */
const MAX_WORKERS = 4;

export class DownloadWorkers {
  private readonly workers: PoolWorker[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly size = Math.max(1, Math.min(MAX_WORKERS, availableParallelism()))) {}

  /**
   * Resolves with the worker's answer once the body is in `temporary` (or the store refused);
   * rejects, with the temporary file already removed, on any failure. An abort cancels the
   * request and rejects with the signal's reason once the worker has cleaned up.
   */
  download(job: Omit<DownloadJob, 'id'>, onBytes: (bytes: number) => void, signal?: AbortSignal): Promise<DownloadAnswer> {
    if (this.closed) return Promise.reject(new Error('the download workers are stopped'));
    signal?.throwIfAborted();
    const id = this.nextId++;
    const worker = this.pick();
    return new Promise<DownloadAnswer>((resolve, reject) => {
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
      worker.thread.postMessage({ type: 'download', job: { ...job, id } } satisfies ToWorker);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const workers = this.workers.splice(0);
    await Promise.all(workers.map((worker) => worker.thread.terminate()));
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
      if (message.type === 'bytes') pending.onBytes(message.bytes);
      else if (message.type === 'failed') pending.reject(Object.assign(new Error(message.error.message), message.error));
      else pending.resolve(message);
    });
    // A worker that dies takes its downloads with it; the next ones go to a fresh worker.
    const lost = (error: Error) => {
      const index = this.workers.indexOf(worker);
      if (index >= 0) this.workers.splice(index, 1);
      for (const pending of [...worker.pending.values()]) pending.reject(error);
    };
    worker.thread.on('error', (error) => lost(new Error(`a download worker failed: ${error.message}`)));
    worker.thread.on('exit', (code) => lost(new Error(`a download worker stopped (exit code ${code})`)));
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
  if (!here.endsWith('.ts')) return new URL('./download-worker.js', here);
  const built = here.replace(/\/src\/((?:[^/]+\/)*)[^/]+\.ts$/, '/dist/$1download-worker.js');
  if (built === here) throw new Error(`cannot tell where the built download worker is for ${here}`);
  return new URL(built);
}
