/**
 * Restores a plain SQL dump by sending it to the server with divio's own driver, statement by
 * statement, with COPY data streamed (pg-copy-streams): no psql reads the dump, so no psql
 * meta-command can run from it, whatever its client encoding. Each statement goes out as the
 * dump's own bytes in a simple-protocol Query message, on a session whose client_encoding is the
 * one the dump set (its `SET client_encoding` runs like any statement), so the server converts
 * exactly as it would have for psql. The first error stops the restore, naming the dump's line.
 */
import type { Readable } from 'node:stream';
import pg from 'pg';
import copyStreams, { type CopyStreamQuery } from 'pg-copy-streams';
import { InvalidInputError } from '../../../core/errors.js';
import { SqlSplitter, sqlEvents, type SplitterResult } from './sql-statements.js';

/** The parts of node-pg's connection that a submittable query uses. */
interface Connection {
  stream: NodeJS.WritableStream;
  sendCopyFail(message: string): void;
  on(event: 'parameterStatus', listener: (msg: { parameterName: string; parameterValue: string }) => void): void;
}

export interface SqlRestoreResult extends SplitterResult {
  statements: number;
  copyRows: number;
}

/** Writes a Query message carrying `sql` byte for byte (node-pg would encode a string as UTF-8). */
function sendQuery(connection: Connection, sql: Buffer): void {
  const header = Buffer.alloc(5);
  header[0] = 0x51; // 'Q'
  header.writeUInt32BE(4 + sql.length + 1, 1);
  connection.stream.write(header);
  connection.stream.write(sql);
  connection.stream.write(Buffer.from([0]));
}

/** A statement that is not a COPY FROM stdin: node-pg's submittable protocol, results ignored. */
class RawStatement {
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (error: unknown) => void;

  constructor(private readonly sql: Buffer) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  submit(connection: Connection): void {
    sendQuery(connection, this.sql);
  }
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
  handleCopyInResponse(connection: Connection): void {
    // Data the splitter did not see coming would be taken from the dump's next statements.
    connection.sendCopyFail('divio: this statement reads COPY data but is not a COPY ... FROM stdin statement');
  }
  handleError(error: unknown): void {
    this.reject(error);
  }
  handleReadyForQuery(): void {
    this.resolve();
  }
}

interface PgError extends Error {
  position?: string;
  where?: string;
  detail?: string;
  hint?: string;
}

/**
 * Restores `dump` (the plain SQL, as bytes) through a new session opened with `config`. Throws InvalidInputError for an SQL error or
 * anything the splitter refuses.
 */
export async function restoreSqlDump(config: pg.ClientConfig, dump: Readable, signal?: AbortSignal): Promise<SqlRestoreResult> {
  const client = new pg.Client({ ...config, client_encoding: 'UTF8' });
  const connection = (client as unknown as { connection: Connection }).connection;
  const params = new Map<string, string>();
  connection.on('parameterStatus', (msg) => params.set(msg.parameterName, msg.parameterValue));
  let socketError: unknown;
  client.on('error', (error) => {
    socketError ??= error;
  });
  const onAbort = () => {
    // Ends the session at once; the server rolls back whatever was in flight.
    (connection.stream as unknown as { destroy(): void }).destroy();
  };
  await client.connect();
  signal?.addEventListener('abort', onAbort, { once: true });
  const splitter = new SqlSplitter({
    clientEncoding: params.get('client_encoding') ?? 'UTF8',
    standardConformingStrings: params.get('standard_conforming_strings') !== 'off',
  });
  let statements = 0;
  let copyRows = 0;
  let copy: { stream: CopyStreamQuery; line: number; dataLine: number; error: unknown } | null = null;
  const check = () => {
    if (signal?.aborted) throw signal.reason;
    if (socketError !== undefined) throw socketError;
  };
  try {
    for await (const event of sqlEvents(dump, splitter)) {
      check();
      switch (event.kind) {
        case 'statement': {
          // A skipped COPY's data is read past: with no stream open, its copy-data events are dropped.
          if (event.copy !== null && event.skip !== null) break;
          if (event.copy !== null) {
            const current = { stream: startCopy(client, event.sql), line: event.line, dataLine: event.copy.dataLine, error: undefined as unknown };
            current.stream.on('error', (error) => {
              current.error ??= error;
            });
            copy = current;
            break;
          }
          if (event.skip !== null) break;
          const statement = new RawStatement(event.sql);
          client.query(statement as unknown as pg.QueryConfig);
          try {
            await statement.done;
          } catch (error) {
            check();
            throw sqlError(error, event.line, event.sql, params.get('client_encoding'));
          }
          statements++;
          // Whatever way the statement changed them (SET, set_config(), a function), the server says.
          splitter.setClientEncoding(params.get('client_encoding') ?? 'UTF8');
          splitter.setStandardConformingStrings(params.get('standard_conforming_strings') !== 'off');
          break;
        }
        case 'copy-data': {
          if (copy === null) break;
          if (copy.error !== undefined) throw copyError(copy.error, copy);
          if (!copy.stream.write(event.data)) {
            const stream = copy.stream;
            await new Promise<void>((resolve) => {
              const done = () => {
                stream.off('drain', done);
                stream.off('close', done);
                resolve();
              };
              stream.on('drain', done);
              stream.on('close', done);
            });
            check();
            if (copy.error !== undefined) throw copyError(copy.error, copy);
          }
          break;
        }
        case 'copy-end': {
          if (copy === null) break;
          const current = copy;
          copy = null;
          if (current.error === undefined) {
            await new Promise<void>((resolve) => {
              current.stream.once('finish', resolve);
              current.stream.once('close', resolve);
              current.stream.end();
            });
          }
          check();
          if (current.error !== undefined) throw copyError(current.error, current);
          statements++;
          copyRows += current.stream.rowCount;
          break;
        }
        case 'end':
          break;
      }
    }
    return { ...splitter.result, statements, copyRows };
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await client.end().catch(() => undefined);
  }
}

function startCopy(client: pg.Client, sql: Buffer): CopyStreamQuery {
  const stream = copyStreams.from('');
  // pg-copy-streams sends its text as a JS string (UTF-8); the dump's statement goes out as its own bytes.
  stream.submit = (connection: unknown) => {
    stream.connection = connection;
    sendQuery(connection as Connection, sql);
  };
  client.query(stream as unknown as pg.QueryConfig);
  return stream;
}

function describe(error: unknown): string {
  const e = error as PgError;
  const parts = [`ERROR:  ${e.message}`];
  if (e.detail) parts.push(`DETAIL:  ${e.detail}`);
  if (e.hint) parts.push(`HINT:  ${e.hint}`);
  return parts.join('\n');
}

const NOTHING_CHANGED = 'Nothing was changed: the local database is as it was. Fix the statement in the dump, or export it again.';

function sqlError(error: unknown, line: number, sql: Buffer, encoding: string | undefined): InvalidInputError {
  if (!(error instanceof Error)) return new InvalidInputError(`the SQL dump failed to restore at line ${line}: ${String(error)}`, { hint: NOTHING_CHANGED });
  let at = line;
  const position = Number((error as PgError).position);
  if (position > 0 && (encoding === undefined || /^(utf8|unicode|sql_ascii)$/i.test(encoding))) {
    // The server counts characters of the statement; in UTF-8 those are code points.
    const before = Array.from(sql.toString('utf8')).slice(0, position - 1).join('');
    at += before.split('\n').length - 1;
  }
  return new InvalidInputError(`the SQL dump failed to restore at line ${at}:\n${describe(error)}`, { hint: NOTHING_CHANGED, cause: error });
}

function copyError(error: unknown, copy: { line: number; dataLine: number }): InvalidInputError {
  const where = /COPY [^,]+, line (\d+)/.exec((error as PgError).where ?? '');
  const at = where ? `line ${copy.dataLine + Number(where[1]) - 1} (data of the COPY at line ${copy.line})` : `the COPY at line ${copy.line}`;
  return new InvalidInputError(`the SQL dump failed to restore at ${at}:\n${describe(error)}`, { hint: NOTHING_CHANGED, cause: error });
}
