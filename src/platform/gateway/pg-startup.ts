/**
 * The first messages of a PostgreSQL connection, as the gateway sees them before it connects
 * anywhere: SSL and GSS encryption requests (answered "no" here, so what follows is readable),
 * cancel requests, and the startup message that names the role. Pure: bytes in, a decision out.
 */

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 3 << 16;
/** PostgreSQL itself refuses longer startup packets (MAX_STARTUP_PACKET_LENGTH). */
const MAX_STARTUP_LENGTH = 10_000;

export type StartupStep =
  /** More bytes are needed before anything can be decided. */
  | { kind: 'incomplete' }
  /** An encryption request: answer `N` and read on after `length` bytes. */
  | { kind: 'decline-encryption'; length: number }
  /** Forward `length` bytes (and everything after) to the cluster. */
  | { kind: 'forward'; length: number; user?: string; database?: string; cancel?: boolean }
  | { kind: 'invalid'; reason: string };

/** Decide on the message at the start of `buffer`. */
export function readStartup(buffer: Buffer): StartupStep {
  if (buffer.length < 8) return { kind: 'incomplete' };
  const length = buffer.readInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_LENGTH) return { kind: 'invalid', reason: `a startup packet of ${length} bytes` };
  const code = buffer.readInt32BE(4);
  if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
    return length === 8 ? { kind: 'decline-encryption', length } : { kind: 'invalid', reason: 'a malformed encryption request' };
  }
  if (buffer.length < length) return { kind: 'incomplete' };
  if (code === CANCEL_REQUEST) {
    return length === 16 ? { kind: 'forward', length, cancel: true } : { kind: 'invalid', reason: 'a malformed cancel request' };
  }
  if (code >>> 16 !== PROTOCOL_3 >>> 16) return { kind: 'invalid', reason: `protocol version ${code >>> 16}.${code & 0xffff}` };
  const params = startupParameters(buffer.subarray(8, length));
  if (!params) return { kind: 'invalid', reason: 'a malformed startup packet' };
  return { kind: 'forward', length, user: params.get('user'), database: params.get('database') };
}

/** `name\0value\0…\0`: undefined when the list is not terminated properly. */
function startupParameters(body: Buffer): Map<string, string> | undefined {
  const params = new Map<string, string>();
  let at = 0;
  for (;;) {
    if (at >= body.length) return undefined;
    if (body[at] === 0) return at === body.length - 1 ? params : undefined;
    const nameEnd = body.indexOf(0, at);
    if (nameEnd < 0) return undefined;
    const valueEnd = body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return undefined;
    // A repeated parameter: PostgreSQL takes the last, so must the check.
    params.set(body.toString('utf8', at, nameEnd), body.toString('utf8', nameEnd + 1, valueEnd));
    at = valueEnd + 1;
  }
}

/**
 * An ErrorResponse the client shows as the server's refusal (FATAL, 28000
 * invalid_authorization_specification), sent before closing.
 */
export function refusal(message: string): Buffer {
  const fields = Buffer.concat(
    [
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '28000'],
      ['M', message],
    ].map(([code, value]) => Buffer.concat([Buffer.from(code!, 'ascii'), Buffer.from(value!, 'utf8'), Buffer.from([0])])),
  );
  const body = Buffer.concat([fields, Buffer.from([0])]);
  const header = Buffer.alloc(5);
  header.write('E', 0, 'ascii');
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}
