/**
 * Progress of a sync on stderr: on a terminal, one line redrawn in place (a bar, files, bytes,
 * rate) at most ten times a second; otherwise a plain line every few seconds, never a redraw.
 */
import { formatBytes, type IO } from '../../../core/io.js';

export interface Progress {
  /** Bytes moved (negative: an attempt that failed and will be retried). */
  bytes(count: number): void;
  fileDone(): void;
  /** Removes the bar; idempotent. */
  stop(): void;
}

const REDRAW_MS = 100;
const PLAIN_EVERY_MS = 5000;

export function startProgress(io: IO, verb: string, totals: { files: number; bytes: number }): Progress {
  const started = Date.now();
  let bytes = 0;
  let files = 0;
  let stopped = false;

  const describe = () => {
    const elapsed = (Date.now() - started) / 1000;
    const rate = elapsed > 0.5 ? `  ${formatBytes(bytes / elapsed)}/s` : '';
    return `${files}/${totals.files} files  ${formatBytes(bytes)}/${formatBytes(totals.bytes)}${rate}`;
  };

  let timer: NodeJS.Timeout | undefined;
  if (io.fancy) {
    const draw = () => {
      const columns = (io.stderr as { columns?: number }).columns ?? 80;
      const text = `${verb} ${describe()}`;
      const barWidth = Math.max(0, Math.min(30, columns - text.length - 4));
      const fraction = totals.bytes > 0 ? Math.min(1, bytes / totals.bytes) : totals.files > 0 ? files / totals.files : 1;
      const filled = Math.round(fraction * barWidth);
      const bar = barWidth > 0 ? `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ` : '';
      io.stderr.write(`\r\x1b[2K${bar}${text}`.slice(0, columns + 5));
    };
    draw();
    timer = setInterval(draw, REDRAW_MS);
  } else {
    io.info(`${verb} ${totals.files} file(s), ${formatBytes(totals.bytes)}`);
    timer = setInterval(() => io.info(`  ${describe()}`), PLAIN_EVERY_MS);
  }
  timer.unref();

  return {
    bytes(count) {
      bytes += count;
    },
    fileDone() {
      files++;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (io.fancy) io.stderr.write('\r\x1b[2K');
    },
  };
}
