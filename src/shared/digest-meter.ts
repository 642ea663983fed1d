/** A pass-through stream that counts and sha256-hashes what flows through it: both ends of a transfer compare the results. */
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';

export class DigestMeter extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    done(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}
