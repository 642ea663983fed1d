// The part of pg-copy-streams (7.x, which ships no types) that divio uses.
declare module 'pg-copy-streams' {
  import type { Writable } from 'node:stream';
  export interface CopyStreamQuery extends Writable {
    rowCount: number;
    /** Sends the query that starts the COPY; divio replaces it to send the dump's own bytes. */
    submit(connection: unknown): void;
    connection: unknown;
  }
  export function from(text: string): CopyStreamQuery;
  const copyStreams: { from: typeof from };
  export default copyStreams;
}
