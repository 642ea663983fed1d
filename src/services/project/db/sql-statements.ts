/**
 * Splits a plain SQL dump, as a byte stream, into the statements divio sends to the server itself
 * (import.ts), so no psql ever reads the dump and no psql meta-command can run from it.
 *
 * Boundaries are found the way psql finds them (src/fe_utils/psqlscan.l): a `;` outside '…' (with
 * '' doubling), E'…' (backslash escapes), "identifiers", $tag$…$tag$, -- and nested /* *\/ comments,
 * parentheses and the BEGIN ATOMIC … END of new-style function bodies. A `COPY … FROM stdin`
 * statement is followed by data lines up to a `\.` line, which are handed out as they arrive.
 *
 * Encodings: the lexer works in the dump's client encoding. Under SJIS, SHIFT_JIS_2004, BIG5, GBK,
 * GB18030, UHC and JOHAB the bytes after a lead byte (which may be 0x5C '\', or anything psql's
 * PQmblen would swallow) belong to the character, never read as quote or backslash. The encoding
 * follows `SET client_encoding`/`SET NAMES` in the dump, and the caller can also set it from what
 * the server reports after each statement ({@link SqlSplitter.setClientEncoding}); the same goes
 * for standard_conforming_strings. Statements are handed out one at a time, so a setting changed
 * by one statement applies from the next byte on.
 *
 * A backslash outside strings, comments and COPY data would be a psql meta-command: refused, with
 * its line. Only what pg_dump itself writes is skipped: `\restrict`, `\unrestrict`, `\connect` and
 * `\c` lines at the start of a line between statements. Statements that act outside the target
 * database or on ownership and privileges are marked to be skipped (like pg_restore --no-owner
 * --no-acl), and pg_dump output that was cut off is refused.
 *
 * Memory: a statement is held whole (the protocol sends it in one message), bounded by
 * {@link MAX_STATEMENT_BYTES}; COPY data is handed out in slices of the input chunks, never held.
 */
import { InvalidInputError } from '../../../core/errors.js';

export const MAX_STATEMENT_BYTES = 256 * 1024 * 1024;

export type SqlEvent =
  | {
      kind: 'statement';
      /** The statement's bytes, as in the dump (from its first word to its `;`). */
      sql: Buffer;
      /** 1-based line of its first byte. */
      line: number;
      /** Set when the statement must not run (a reason such as "privileges"); the data of a skipped COPY never is. */
      skip: string | null;
      /** A `COPY … FROM stdin`: `copy-data` events follow up to a `copy-end`. */
      copy: { dataLine: number } | null;
    }
  | { kind: 'copy-data'; data: Buffer }
  | { kind: 'copy-end' }
  | { kind: 'end' };

export interface SplitterResult {
  /** The input starts like pg_dump plain output (`--\n-- PostgreSQL database dump\n--`). */
  pgDump: boolean;
  /** The input ends with pg_dump's closing `-- PostgreSQL database dump complete` line. */
  complete: boolean;
  /** Statements marked to be skipped. */
  skippedStatements: number;
  /** `\restrict`, `\unrestrict`, `\connect` and `\c` lines skipped. */
  skippedMetaCommands: number;
  /** Lines read so far. */
  lines: number;
}

// ---------------------------------------------------------------------------------------------
// Encodings

const MB_NONE = 0; // ASCII-safe: every byte of a multi-byte character has the high bit set
const MB_SJIS = 1;
const MB_DOUBLE = 2; // BIG5, GBK, UHC: a high-bit byte starts a 2-byte character
const MB_GB18030 = 3;
const MB_EUC = 4; // JOHAB (PostgreSQL measures it like EUC)

/** PostgreSQL's encoding names and aliases (pg_char_to_encoding), cleaned of everything but letters and digits. */
const UNSAFE_ENCODINGS = new Map<string, number>([
  ['sjis', MB_SJIS],
  ['shiftjis', MB_SJIS],
  ['mskanji', MB_SJIS],
  ['win932', MB_SJIS],
  ['windows932', MB_SJIS],
  ['shiftjis2004', MB_SJIS],
  ['big5', MB_DOUBLE],
  ['win950', MB_DOUBLE],
  ['windows950', MB_DOUBLE],
  ['gbk', MB_DOUBLE],
  ['cp936', MB_DOUBLE],
  ['win936', MB_DOUBLE],
  ['windows936', MB_DOUBLE],
  ['uhc', MB_DOUBLE],
  ['win949', MB_DOUBLE],
  ['windows949', MB_DOUBLE],
  ['gb18030', MB_GB18030],
  ['johab', MB_EUC],
]);

function encodingKind(name: string): number {
  return UNSAFE_ENCODINGS.get(name.toLowerCase().replace(/[^a-z0-9]/g, '')) ?? MB_NONE;
}

/** True for client-only encodings whose trail bytes can be ASCII (so a naive lexer misreads them). */
export function isAsciiUnsafeEncoding(name: string): boolean {
  return encodingKind(name) !== MB_NONE;
}

// ---------------------------------------------------------------------------------------------
// Lexer states

const S_IDLE = 0; // between statements
const S_STMT = 1;
const S_LINE_COMMENT = 2;
const S_BLOCK_COMMENT = 3;
const S_SQ = 4; // '…', standard
const S_EQ = 5; // E'…' (or '…' with standard_conforming_strings off)
const S_EQ_ESC = 6; // after a backslash in S_EQ
const S_DQ = 7; // "…"
const S_DOLLAR_TAG = 8; // after a '$' that may open a dollar quote
const S_DOLLAR = 9; // inside a dollar quote
const S_DOLLAR_CLOSE = 10; // matching a possible closing tag
const S_META = 11; // after a backslash: reading the meta-command's name
const S_META_LINE = 12; // skipping the rest of an allowed meta-command line
const S_COPY_REST = 13; // after `COPY … FROM stdin;`: the rest of its line comes after the data
const S_COPY_DATA = 14;
const S_QEND = 15; // after a string's closing quote: '' or a quote on a following line continues it

const T_NONE = 0;
const T_WORD = 1;
const T_NUM = 2;

const ALLOWED_META = new Set(['restrict', 'unrestrict', 'connect', 'c']);
const CLOSING_LINE = '-- PostgreSQL database dump complete';
const HEADER_BYTES = 256;
const WORD_MAX = 32;
const NL_BACKSLASH_DOT = Buffer.from('\n\\.', 'latin1');

function isIdentStart(b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || b === 0x5f || b >= 0x80;
}
function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}
function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0c || b === 0x0b;
}

function incomplete(why: string): InvalidInputError {
  return new InvalidInputError(`the dump is incomplete: ${why} (the file was cut off?)`, {
    hint: 'get a complete copy of the dump (download it again or re-run pg_dump) and import that',
  });
}

interface Segment {
  buf: Buffer;
  /** Line number at the segment's first byte, when it does not simply continue the previous one. */
  line?: number;
}

/**
 * The splitter: push input with {@link write} and {@link end}, take events with {@link next}
 * (null: it needs more input). Throws InvalidInputError for what it refuses.
 */
export class SqlSplitter {
  private queue: Segment[] = [];
  private cur: Buffer = Buffer.alloc(0);
  private pos = 0;
  private ended = false;
  /** The bytes left in `cur` cannot be decided without the next chunk. */
  private needMore = false;
  private done = false;

  private header: 'pg_dump' | 'pg_dumpall' | 'other' | 'undecided' = 'undecided';
  private headBytes: Buffer[] = [];
  private headLen = 0;

  private line = 1;
  private st = S_IDLE;
  private mb = MB_NONE;
  private mbSkip = 0;
  private gbSecond = false; // GB18030: the next byte decides between 2 and 4 bytes
  private standardStrings = true;

  // statement being read
  private parts: Buffer[] = [];
  private partsLen = 0;
  private stmtStart = -1; // where the statement starts in `cur` (-1: before this chunk)
  private stmtLine = 0;
  private paren = 0;
  private beginDepth = 0;
  private idents: string[] = []; // first letters of the first four identifiers (psqlscan's heuristic)
  private identCount = 0;
  private firstWords: string[] = [];
  private lastTokens: string[] = ['', '', '', ''];
  private copyFrom = false;
  private copyProgram = false;
  private prevToken = '';

  // sub-state
  private tok = T_NONE;
  private word = new Uint8Array(WORD_MAX);
  private wordLen = 0;
  private wordOther = false;
  private pendDash = false; // a '-' that may start a comment
  private pendSlash = false; // a '/' that may start a comment
  private commentDepth = 0;
  private commentPrev = 0;
  private tag = Buffer.alloc(64);
  private tagLen = 0;
  private tagMatch = 0;
  private metaName = '';
  private metaLine = 0;
  private metaAtLineStart = false;
  private prevByte = 10;
  private capture: string | null = null; // an idle line comment at the start of a line, for the closing line

  // COPY
  private restParts: Buffer[] = [];
  private restLine = 0;
  private pendingEvent: SqlEvent | null = null;
  private copyLineStart = true;

  private qType = S_SQ;
  private qNewline = false;
  private qImmediate = false;

  private closingSeen = false;
  private skippedStatements = 0;
  private skippedMetaCommands = 0;

  constructor(options: { clientEncoding?: string; standardConformingStrings?: boolean } = {}) {
    if (options.clientEncoding) this.setClientEncoding(options.clientEncoding);
    if (options.standardConformingStrings !== undefined) this.standardStrings = options.standardConformingStrings;
  }

  /** The client encoding the next bytes are read in (e.g. as the server reports it after a statement). */
  setClientEncoding(name: string): void {
    this.mb = encodingKind(name);
  }

  setStandardConformingStrings(on: boolean): void {
    this.standardStrings = on;
  }

  write(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.header === 'undecided') {
      const take = chunk.subarray(0, HEADER_BYTES - this.headLen);
      this.headBytes.push(Buffer.from(take));
      this.headLen += take.length;
      this.decideHeader(this.headLen >= HEADER_BYTES);
    }
    if (this.resumeLine !== null) {
      this.queue.push({ buf: chunk, line: this.resumeLine });
      this.resumeLine = null;
    } else {
      this.queue.push({ buf: chunk });
    }
  }

  end(): void {
    this.ended = true;
    this.decideHeader(true);
  }

  get result(): SplitterResult {
    return {
      pgDump: this.header === 'pg_dump',
      complete: this.closingSeen && this.done,
      skippedStatements: this.skippedStatements,
      skippedMetaCommands: this.skippedMetaCommands,
      lines: this.line - (this.prevByte === 10 ? 1 : 0),
    };
  }

  /** The next event, or null when more input is needed. */
  next(): SqlEvent | null {
    if (this.done) return { kind: 'end' };
    if (this.header === 'undecided') return null;
    for (;;) {
      if (this.pos >= this.cur.length || this.needMore) {
        if (this.load()) this.needMore = false;
        else if (!this.ended) return null;
        else if (this.pos >= this.cur.length) return this.finish();
        else this.needMore = false; // the input ended: what is left decides now
      }
      const event = this.st === S_COPY_DATA ? this.scanCopy() : this.lex();
      if (event !== null) return event;
    }
  }

  /** Moves to the next input segment; false if there is none yet. */
  private load(): boolean {
    const rest = this.pos < this.cur.length ? this.cur.subarray(this.pos) : null;
    const next = this.queue.shift();
    if (next === undefined) return false;
    if (this.st !== S_COPY_DATA && this.st !== S_COPY_REST && this.stmtStart >= 0) {
      this.parts.push(this.cur.subarray(this.stmtStart));
      this.partsLen += this.cur.length - this.stmtStart;
      this.stmtStart = 0;
      if (this.partsLen > MAX_STATEMENT_BYTES) this.tooLong();
    }
    if (next.line !== undefined) this.line = next.line;
    // Only COPY data leaves a few undecided bytes behind (a possible `\.` line cut by the chunk).
    this.cur = rest !== null ? Buffer.concat([rest, next.buf]) : next.buf;
    this.pos = 0;
    return true;
  }

  private decideHeader(final: boolean): void {
    if (this.header !== 'undecided') return;
    const kind = headerKind(Buffer.concat(this.headBytes, this.headLen), final);
    this.header = kind === 'undecided' && final ? 'other' : kind;
    if (this.header !== 'undecided') this.headBytes = [];
    if (this.header === 'pg_dumpall') {
      throw new InvalidInputError('the dump is a pg_dumpall cluster dump (all databases and roles); divio imports one database', {
        hint: 'export the one database with pg_dump (e.g. `pg_dump -Fc DBNAME > dump.dump`) and import that',
      });
    }
  }

  // -- the lexer ----------------------------------------------------------------------------

  private lex(): SqlEvent | null {
    const buf = this.cur;
    const n = buf.length;
    let i = this.pos;
    while (i < n) {
      const b = buf[i]!;
      if (this.st === S_COPY_REST) {
        const nl = buf.indexOf(10, i);
        const end = nl === -1 ? n : nl + 1;
        this.restParts.push(buf.subarray(i, end));
        if (nl === -1) {
          i = n;
          break;
        }
        this.line++;
        this.prevByte = 10;
        this.pos = end;
        return this.startCopyData();
      }
      let trail = false;
      if (this.mbSkip > 0) {
        this.mbSkip--;
        trail = true;
      } else if (this.gbSecond) {
        this.gbSecond = false;
        trail = true;
        if (isDigit(b)) this.mbSkip = 2;
      } else if (b >= 0x80 && this.mb !== MB_NONE && this.st !== S_META_LINE) {
        this.leadByte(b);
      }
      if (b === 0) {
        throw new InvalidInputError(`the dump contains a NUL byte at line ${this.line}; plain SQL never does`, {
          hint: 'check that the file really is a plain SQL dump',
        });
      }
      const event = this.step(b, trail, i);
      if (b === 10) this.line++;
      this.prevByte = b;
      i++;
      if (event !== null) {
        this.pos = i;
        if (event.kind === 'copy-rest') return this.lex();
        return event;
      }
    }
    this.pos = i;
    return null;
  }

  private leadByte(b: number): void {
    switch (this.mb) {
      case MB_SJIS:
        if (b < 0xa1 || b > 0xdf) this.mbSkip = 1; // 0xA1-0xDF: half-width katakana, one byte
        break;
      case MB_DOUBLE:
        this.mbSkip = 1;
        break;
      case MB_GB18030:
        this.gbSecond = true;
        break;
      case MB_EUC:
        this.mbSkip = b === 0x8f ? 2 : 1;
        break;
    }
  }

  /** One byte in the current state. Returns an event when a statement ends. */
  private step(b: number, trail: boolean, i: number): SqlEvent | typeof COPY_REST | null {
    switch (this.st) {
      case S_IDLE:
        return this.idle(b, trail, i);
      case S_STMT:
        return this.top(b, trail, i);
      case S_LINE_COMMENT:
        // a comment ends at a CR too, as psql and the server lex it
        if ((b === 10 || b === 13) && !trail) {
          if (this.capture !== null) this.endCapture();
          this.st = this.stmtLine > 0 ? S_STMT : S_IDLE;
        } else if (this.capture !== null && this.capture.length < 64) {
          this.capture += String.fromCharCode(b);
        }
        return null;
      case S_BLOCK_COMMENT:
        if (!trail) {
          if (this.commentPrev === 0x2a && b === 0x2f) {
            this.commentPrev = 0;
            if (--this.commentDepth === 0) this.st = this.stmtLine > 0 ? S_STMT : S_IDLE;
            return null;
          }
          if (this.commentPrev === 0x2f && b === 0x2a) {
            this.commentPrev = 0;
            this.commentDepth++;
            return null;
          }
        }
        this.commentPrev = trail ? 0 : b;
        return null;
      case S_SQ:
        if (b === 0x27 && !trail) this.closeQuote(S_SQ);
        return null;
      case S_EQ:
        if (trail) return null;
        if (b === 0x27) this.closeQuote(S_EQ);
        else if (b === 0x5c) this.st = S_EQ_ESC;
        return null;
      case S_QEND:
        if (!trail && b === 0x27 && (this.qNewline || this.qImmediate)) {
          this.st = this.qType;
          return null;
        }
        if (!trail && (b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0c || b === 0x0a)) {
          this.qImmediate = false;
          if (b === 0x0a) this.qNewline = true;
          return null;
        }
        this.st = S_STMT;
        return this.top(b, trail, i);
      case S_EQ_ESC:
        this.st = S_EQ; // the escaped byte (a lead byte keeps its trail bytes via mbSkip)
        return null;
      case S_DQ:
        if (b === 0x22 && !trail) this.st = S_STMT;
        return null;
      case S_DOLLAR_TAG:
        return this.dollarTag(b, trail, i);
      case S_DOLLAR:
        if (b === 0x24 && !trail) {
          this.st = S_DOLLAR_CLOSE;
          this.tagMatch = 0;
        }
        return null;
      case S_DOLLAR_CLOSE:
        if (this.tagMatch === this.tagLen && b === 0x24 && !trail) {
          this.st = S_STMT;
          this.tok = T_NONE;
          this.token('$');
        } else if (this.tagMatch < this.tagLen && b === this.tag[this.tagMatch]) {
          this.tagMatch++;
        } else if (b === 0x24 && !trail) {
          this.tagMatch = 0;
        } else {
          this.st = S_DOLLAR;
        }
        return null;
      case S_META:
        return this.metaByte(b, trail);
      case S_META_LINE:
        if (b === 10) {
          this.st = S_IDLE;
        }
        return null;
      default:
        return null;
    }
  }

  private idle(b: number, trail: boolean, i: number): SqlEvent | typeof COPY_REST | null {
    if (this.pendDash) {
      this.pendDash = false;
      if (b === 0x2d && !trail) {
        this.startLineComment(true);
        return null;
      }
      this.beginStatement(i, Buffer.from('-'));
      return this.top(b, trail, i);
    }
    if (this.pendSlash) {
      this.pendSlash = false;
      if (b === 0x2a && !trail) {
        this.st = S_BLOCK_COMMENT;
        this.commentDepth = 1;
        this.commentPrev = 0;
        return null;
      }
      this.beginStatement(i, Buffer.from('/'));
      return this.top(b, trail, i);
    }
    if (!trail) {
      if (isSpace(b)) return null;
      if (b === 0x2d) {
        this.pendDash = true;
        this.dashAtLineStart = this.prevByte === 10;
        return null;
      }
      if (b === 0x2f) {
        this.pendSlash = true;
        return null;
      }
      if (b === 0x5c) {
        this.startMeta(true);
        return null;
      }
    }
    this.beginStatement(i, null);
    return this.top(b, trail, i);
  }

  private dashAtLineStart = false;

  private startLineComment(idle: boolean): void {
    this.st = S_LINE_COMMENT;
    // pg_dump's closing line is a comment of its own at the start of a line, between statements
    this.capture = idle && this.dashAtLineStart ? '--' : null;
  }

  private endCapture(): void {
    const text = this.capture!.replace(/[ \t\r]+$/, '');
    this.capture = null;
    if (text === CLOSING_LINE) this.closingSeen = true;
  }

  private beginStatement(i: number, held: Buffer | null): void {
    this.closingSeen = false;
    this.st = S_STMT;
    this.stmtLine = this.line;
    this.stmtStart = i;
    this.parts = held ? [held] : [];
    this.partsLen = held ? held.length : 0;
    this.paren = 0;
    this.beginDepth = 0;
    this.idents = [];
    this.identCount = 0;
    this.firstWords = [];
    this.lastTokens = ['', '', '', ''];
    this.copyFrom = false;
    this.copyProgram = false;
    this.prevToken = '';
    this.tok = T_NONE;
    this.pendDash = false;
    this.pendSlash = false;
  }

  /** A byte at the top level of a statement. */
  private top(b: number, trail: boolean, i: number): SqlEvent | typeof COPY_REST | null {
    if (this.pendDash) {
      this.pendDash = false;
      if (b === 0x2d && !trail) {
        this.startLineComment(false);
        return null;
      }
      this.token('-');
    } else if (this.pendSlash) {
      this.pendSlash = false;
      if (b === 0x2a && !trail) {
        this.st = S_BLOCK_COMMENT;
        this.commentDepth = 1;
        this.commentPrev = 0;
        return null;
      }
      this.token('/');
    }
    if (trail || b >= 0x80) {
      // part of a (possibly multi-byte) identifier character
      if (this.tok === T_WORD) this.wordByte(b);
      else if (this.tok === T_NUM) this.endToken();
      if (this.tok === T_NONE) this.startWord(b);
      return null;
    }
    if (this.tok === T_WORD) {
      if (isIdentStart(b) || isDigit(b) || b === 0x24) {
        this.wordByte(b);
        return null;
      }
      if (b === 0x27 && this.wordLen === 1 && (this.word[0] === 0x65 || this.word[0] === 0x45) && !this.wordOther) {
        // E'…': the E is the string's prefix, not a word
        this.tok = T_NONE;
        this.st = S_EQ;
        this.token("'");
        return null;
      }
      this.endToken();
    } else if (this.tok === T_NUM) {
      if (isIdentStart(b) || isDigit(b) || b === 0x2e) return null;
      this.endToken();
    }
    switch (b) {
      case 0x27:
        this.st = this.standardStrings ? S_SQ : S_EQ;
        this.token("'");
        return null;
      case 0x22:
        this.st = S_DQ;
        this.token('"');
        return null;
      case 0x24:
        this.st = S_DOLLAR_TAG;
        this.tagLen = 0;
        return null;
      case 0x2d:
        this.pendDash = true;
        return null;
      case 0x2f:
        this.pendSlash = true;
        return null;
      case 0x5c:
        this.startMeta(false);
        return null;
      case 0x28:
        this.paren++;
        this.token('(');
        return null;
      case 0x29:
        if (this.paren > 0) this.paren--;
        this.token(')');
        return null;
      case 0x3b:
        if (this.paren === 0 && this.beginDepth === 0) return this.endStatement(i + 1);
        this.token(';');
        return null;
      default:
        if (isSpace(b)) return null;
        if (isIdentStart(b)) this.startWord(b);
        else if (isDigit(b)) this.tok = T_NUM;
        else this.token(String.fromCharCode(b));
        return null;
    }
  }

  private closeQuote(type: number): void {
    this.st = S_QEND;
    this.qType = type;
    this.qNewline = false;
    this.qImmediate = true;
  }

  private startWord(b: number): void {
    this.tok = T_WORD;
    this.wordLen = 0;
    this.wordOther = false;
    this.wordByte(b);
  }

  private wordByte(b: number): void {
    if (b >= 0x80) this.wordOther = true;
    if (this.wordLen < WORD_MAX) this.word[this.wordLen] = b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
    this.wordLen++;
  }

  private endToken(): void {
    const kind = this.tok;
    this.tok = T_NONE;
    if (kind === T_NUM) {
      this.token('0');
      return;
    }
    const text = this.wordOther || this.wordLen > WORD_MAX ? '\u0000' : Buffer.from(this.word.subarray(0, this.wordLen)).toString('latin1');
    // psqlscan's heuristic for BEGIN ATOMIC … END in CREATE [OR REPLACE] FUNCTION|PROCEDURE
    if (this.identCount < 4) {
      this.idents.push(text === 'create' || text === 'function' || text === 'procedure' || text === 'or' || text === 'replace' ? text[0]! : '');
    }
    this.identCount++;
    const id = this.idents;
    if (id[0] === 'c' && (id[1] === 'f' || id[1] === 'p' || (id[1] === 'o' && id[2] === 'r' && (id[3] === 'f' || id[3] === 'p'))) && this.paren === 0) {
      if (text === 'begin') this.beginDepth++;
      else if (text === 'case') {
        if (this.beginDepth >= 1) this.beginDepth++;
      } else if (text === 'end' && this.beginDepth > 0) this.beginDepth--;
    }
    if (this.firstWords[0] === 'copy' && this.paren === 0) {
      // FROM STDOUT reads from the client too (the server takes either name)
      if (this.prevToken === 'from' && (text === 'stdin' || text === 'stdout')) this.copyFrom = true;
      if ((this.prevToken === 'from' || this.prevToken === 'to') && text === 'program') this.copyProgram = true;
    }
    this.token(text);
  }

  private token(text: string): void {
    if (this.firstWords.length < 6) this.firstWords.push(text);
    this.lastTokens.shift();
    this.lastTokens.push(text);
    this.prevToken = text;
  }

  private dollarTag(b: number, trail: boolean, i: number): SqlEvent | typeof COPY_REST | null {
    if (b === 0x24 && !trail) {
      this.st = S_DOLLAR;
      this.token('$');
      return null;
    }
    const tagChar = trail || b >= 0x80 || isIdentStart(b) || (this.tagLen > 0 && isDigit(b));
    if (tagChar) {
      if (this.tagLen === this.tag.length) {
        const bigger = Buffer.alloc(this.tag.length * 2);
        this.tag.copy(bigger);
        this.tag = bigger;
      }
      this.tag[this.tagLen++] = b;
      return null;
    }
    // Not a dollar quote ($1, or a lone $): what was read as a tag is a word.
    this.st = S_STMT;
    this.token('$');
    if (this.tagLen > 0) {
      this.tok = T_WORD;
      this.wordLen = 0;
      this.wordOther = false;
      for (let k = 0; k < this.tagLen; k++) this.wordByte(this.tag[k]!);
    } else if (isDigit(b)) {
      this.tok = T_NUM;
      return null;
    }
    return this.top(b, trail, i);
  }

  private startMeta(idle: boolean): void {
    this.st = S_META;
    this.metaName = '';
    this.metaLine = this.line;
    this.metaAtLineStart = idle && this.prevByte === 10;
  }

  private metaByte(b: number, trail: boolean): null {
    const letter = !trail && ((b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a));
    if (letter && this.metaName.length < 32) {
      this.metaName += String.fromCharCode(b);
      return null;
    }
    if (this.metaName === '' && !isSpace(b)) this.metaName = String.fromCharCode(b); // \! \\ \; \.
    else if (letter) return null;
    this.metaEnd(false);
    this.st = b === 10 ? S_IDLE : S_META_LINE;
    return null;
  }

  private metaEnd(atEnd: boolean): void {
    const name = this.metaName;
    const allowed = ALLOWED_META.has(name) || (atEnd && [...ALLOWED_META].some((m) => m.startsWith(name)));
    if (!allowed || !this.metaAtLineStart) {
      throw new InvalidInputError(
        `the dump contains the psql meta-command \\${name} at line ${this.metaLine}; divio sends the dump's SQL to the server itself and runs no psql meta-commands`,
        {
          hint:
            name === 'encoding'
              ? "set the dump's encoding with SQL instead: `SET client_encoding = 'NAME';`"
              : 'remove the line from the dump (pg_dump output never needs one), or make the dump again with pg_dump',
        },
      );
    }
    this.skippedMetaCommands++;
    if (name !== 'unrestrict') this.closingSeen = false;
  }

  private endStatement(end: number): SqlEvent | typeof COPY_REST {
    const slice = this.cur.subarray(Math.max(this.stmtStart, 0), end);
    const sql = this.parts.length === 0 ? slice : Buffer.concat([...this.parts, slice], this.partsLen + slice.length);
    if (sql.length > MAX_STATEMENT_BYTES) this.tooLong();
    const line = this.stmtLine;
    this.parts = [];
    this.partsLen = 0;
    this.stmtStart = -1;
    this.stmtLine = 0;
    this.st = S_IDLE;
    if (this.copyProgram) {
      throw new InvalidInputError(`the dump runs a shell command on the database server (COPY ... PROGRAM) at line ${line}; divio refuses it`, {
        hint: 'remove the statement from the dump; pg_dump never writes one',
      });
    }
    const skip = this.skipReason();
    if (skip !== null) this.skippedStatements++;
    if (skip === null) this.followSettings(sql);
    if (this.copyFrom) {
      // psql reads the data from the line after the statement; the rest of this line comes after it
      this.pendingEvent = { kind: 'statement', sql, line, skip, copy: { dataLine: 0 } };
      this.st = S_COPY_REST;
      this.restParts = [];
      this.restLine = this.line;
      return COPY_REST;
    }
    return { kind: 'statement', sql, line, skip, copy: null };
  }

  private tooLong(): never {
    throw new InvalidInputError(`the dump has a statement at line ${this.stmtLine} longer than ${MAX_STATEMENT_BYTES / 1024 / 1024} MiB; divio sends each statement whole`, {
      hint: 'split it (e.g. pg_dump --rows-per-insert, or COPY for bulk data)',
    });
  }

  /** Why a statement must not run against the import's scratch database (pg_restore --no-owner --no-acl). */
  private skipReason(): string | null {
    const [a, b, c, d, e] = this.firstWords;
    switch (a) {
      case 'grant':
      case 'revoke':
        return 'privileges';
      case 'create':
      case 'drop':
        return b === 'database' ? 'database-level' : null;
      case 'comment':
        return b === 'on' && c === 'database' ? 'database-level' : null;
      case 'set':
      case 'reset':
        return b === 'session' && c === 'authorization' ? 'ownership' : null;
      case 'alter': {
        if (b === 'database') return 'database-level';
        if (b === 'default') return 'privileges';
        if ((b === 'role' || b === 'user') && d === 'in' && e === 'database') return 'database-level';
        // ALTER <object> OWNER TO <role>, but not ALTER TABLE t RENAME [COLUMN] owner TO x
        const [before, owner, to, role] = this.lastTokens;
        const roleIsName = role === '"' || (role !== undefined && role.length > 0 && isIdentStart(role.charCodeAt(0)));
        if (owner === 'owner' && to === 'to' && roleIsName && !['rename', 'column', 'constraint', 'attribute'].includes(before!)) return 'ownership';
        return null;
      }
      default:
        return null;
    }
  }

  /** SET client_encoding / SET NAMES / SET standard_conforming_strings: read the rest of the dump accordingly. */
  private followSettings(sql: Buffer): void {
    if (this.firstWords[0] !== 'set' || sql.length > 1024) return;
    const m = /^set\s+(?:session\s+|local\s+)?(client_encoding|names|standard_conforming_strings)(?:\s*=\s*|\s+to\s+|\s+)(?:'([^']*)'|"([^"]*)"|([a-z0-9_-]+))\s*;$/i.exec(
      sql.toString('latin1'),
    );
    if (!m) return;
    const value = (m[2] ?? m[3] ?? m[4])!;
    if (value.toLowerCase() === 'default') return;
    if (m[1]!.toLowerCase() === 'standard_conforming_strings') {
      if (/^(on|true|yes|1)$/i.test(value)) this.standardStrings = true;
      else if (/^(off|false|no|0)$/i.test(value)) this.standardStrings = false;
    } else {
      this.setClientEncoding(value);
    }
  }

  // -- COPY data ---------------------------------------------------------------------------

  private startCopyData(): SqlEvent {
    const event = this.pendingEvent!;
    this.pendingEvent = null;
    // At the end of a COPY's line re-read after an earlier COPY's data, the data starts where that ended.
    const resumed = this.pos >= this.cur.length ? (this.queue[0]?.line ?? this.resumeLine) : null;
    if (event.kind === 'statement') event.copy = { dataLine: resumed ?? this.line };
    this.st = S_COPY_DATA;
    this.copyLineStart = true;
    return event;
  }

  /** Length of the `\.` line starting at `at`: >0 it is one, 0 it is not, -1 undecided (more input needed). */
  private marker(at: number): number {
    const buf = this.cur;
    const n = buf.length;
    const final = this.ended && this.queue.length === 0;
    if (at >= n) return final ? 0 : -1;
    if (buf[at] !== 0x5c) return 0;
    if (at + 1 >= n) return final ? 0 : -1;
    if (buf[at + 1] !== 0x2e) return 0;
    if (at + 2 >= n) return final ? 2 : -1;
    const c = buf[at + 2];
    if (c === 10) return 3;
    if (c !== 13) return 0;
    if (at + 3 >= n) return final ? 3 : -1;
    return buf[at + 3] === 10 ? 4 : 0;
  }

  private scanCopy(): SqlEvent | null {
    const buf = this.cur;
    const n = buf.length;
    const start = this.pos;
    if (this.copyLineStart) {
      const m = this.marker(start);
      if (m === -1) {
        this.needMore = true;
        return null;
      }
      if (m > 0) {
        this.pos = start + m;
        if (buf[this.pos - 1] === 10) this.line++;
        this.prevByte = buf[this.pos - 1]!;
        return this.endCopy();
      }
    }
    let search = start;
    for (;;) {
      const idx = buf.indexOf(NL_BACKSLASH_DOT, search);
      if (idx === -1) {
        // A newline and a backslash at the chunk's end may be a `\.` line cut in two: keep the backslash.
        const final = this.ended && this.queue.length === 0;
        const safe = !final && n - start >= 2 && buf[n - 1] === 0x5c && buf[n - 2] === 10 ? n - 1 : n;
        return this.copyData(start, safe);
      }
      const m = this.marker(idx + 1);
      if (m !== 0) return this.copyData(start, idx + 1);
      search = idx + 1;
    }
  }

  private copyData(start: number, end: number): SqlEvent | null {
    this.pos = end;
    if (end < this.cur.length && this.marker(end) === -1) this.needMore = true;
    if (end === start) return null;
    const data = this.cur.subarray(start, end);
    let lines = 0;
    for (let k = data.indexOf(10); k !== -1; k = data.indexOf(10, k + 1)) lines++;
    this.line += lines;
    this.prevByte = data[data.length - 1]!;
    this.copyLineStart = this.prevByte === 10;
    return { kind: 'copy-data', data };
  }

  private endCopy(): SqlEvent {
    // Back to the rest of the COPY statement's line, then on after the `\.` line.
    const rest = Buffer.concat(this.restParts);
    this.restParts = [];
    const after: Segment = { buf: this.cur.subarray(this.pos), line: this.line };
    if (after.buf.length > 0) this.queue.unshift(after);
    else if (this.queue.length > 0) this.queue[0] = { ...this.queue[0]!, line: this.queue[0]!.line ?? this.line };
    else this.resumeLine = this.line;
    if (rest.length > 0) this.queue.unshift({ buf: rest, line: this.restLine });
    this.cur = Buffer.alloc(0);
    this.pos = 0;
    this.st = S_IDLE;
    return { kind: 'copy-end' };
  }

  /** Line to go on with when the input after a COPY block has not arrived yet. */
  private resumeLine: number | null = null;

  // -- end of input ------------------------------------------------------------------------

  private finish(): SqlEvent {
    const pgDump = this.header === 'pg_dump';
    if (this.resumeLine !== null) {
      this.line = this.resumeLine;
      this.resumeLine = null;
    }
    switch (this.st) {
      case S_COPY_DATA:
        if (pgDump) throw incomplete('it ends inside a COPY data block (no closing \\. line)');
        // psql ends the data at the end of the file
        return this.endCopy();
      case S_COPY_REST:
        if (pgDump) throw incomplete('it ends right after a COPY ... FROM stdin statement, before its data');
        this.restLine = this.line;
        return this.startCopyData();
      case S_META:
        this.metaEnd(true);
        this.st = S_IDLE;
        break;
      case S_LINE_COMMENT:
        if (this.capture !== null) this.endCapture();
        this.st = this.stmtLine > 0 ? S_STMT : S_IDLE;
        break;
      default:
        break;
    }
    if (this.st === S_IDLE && (this.pendDash || this.pendSlash)) {
      const held = Buffer.from(this.pendDash ? '-' : '/');
      this.beginStatement(0, held);
      this.stmtStart = -1;
    }
    if (this.st === S_QEND) this.st = S_STMT;
    if (this.st !== S_IDLE && this.st !== S_META_LINE) {
      if (pgDump) throw incomplete(this.truncation());
      if (this.stmtStart >= 0) {
        this.parts.push(this.cur.subarray(this.stmtStart));
        this.partsLen += this.cur.length - this.stmtStart;
        this.stmtStart = -1;
      }
      // psql sends what is left at the end of a file; the server judges it
      if (this.tok !== T_NONE && this.st === S_STMT) this.endToken();
      const sql = Buffer.concat(this.parts, this.partsLen);
      const line = this.stmtLine;
      const skip = this.skipReason();
      if (skip !== null) this.skippedStatements++;
      this.parts = [];
      this.partsLen = 0;
      this.st = S_IDLE;
      this.stmtLine = 0;
      this.pendDash = false;
      this.pendSlash = false;
      if (sql.length > 0) return { kind: 'statement', sql, line, skip, copy: null };
    }
    if (pgDump && !this.closingSeen) {
      throw incomplete("it starts like pg_dump output but lacks its closing '-- PostgreSQL database dump complete' line");
    }
    this.done = true;
    return { kind: 'end' };
  }

  private truncation(): string {
    switch (this.st) {
      case S_SQ:
      case S_EQ:
      case S_EQ_ESC:
        return 'it ends inside a quoted string';
      case S_DQ:
        return 'it ends inside a quoted identifier';
      case S_BLOCK_COMMENT:
        return 'it ends inside a /* comment */';
      case S_DOLLAR:
      case S_DOLLAR_CLOSE:
        return `it ends inside a dollar-quoted string ($${this.tag.subarray(0, this.tagLen).toString('latin1')}$)`;
      default:
        return 'it ends in the middle of a statement';
    }
  }
}

/** Returned by step() when a COPY statement ended: its event waits for the rest of its line. */
const COPY_REST = { kind: 'copy-rest' } as const;

function headerKind(head: Buffer, final: boolean): 'pg_dump' | 'pg_dumpall' | 'other' | 'undecided' {
  const lines = head.toString('latin1').split('\n');
  const complete = lines.slice(0, -1).map((l) => l.replace(/[ \t\r]+$/, ''));
  let k = 0;
  while (k < complete.length && complete[k] === '') k++;
  const needed = complete.slice(k, k + 3);
  if (needed.length < 3 && final) {
    if (needed[0] === '--' && needed[1] === '-- PostgreSQL database dump') return 'pg_dump';
    if (needed[0] === '--' && needed[1] === '-- PostgreSQL database cluster dump') return 'pg_dumpall';
    return 'other';
  }
  if (needed.length < 3) {
    if (needed.length >= 1 && needed[0] !== '--') return 'other';
    if (needed.length >= 2 && needed[1] !== '-- PostgreSQL database dump' && needed[1] !== '-- PostgreSQL database cluster dump') return 'other';
    return 'undecided';
  }
  if (needed[0] !== '--' || needed[2] !== '--') return 'other';
  if (needed[1] === '-- PostgreSQL database dump') return 'pg_dump';
  if (needed[1] === '-- PostgreSQL database cluster dump') return 'pg_dumpall';
  return 'other';
}

/**
 * The events of a byte stream, pulled one at a time: the source is read only when the splitter
 * needs more, so at most one chunk is held beyond the current statement. The caller may change
 * the splitter's settings between events (they apply to the bytes after the last event).
 */
export async function* sqlEvents(source: AsyncIterable<unknown>, splitter: SqlSplitter): AsyncGenerator<SqlEvent> {
  const it = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      const event = splitter.next();
      if (event === null) {
        const chunk = await it.next();
        if (chunk.done === true) splitter.end();
        else splitter.write(Buffer.isBuffer(chunk.value) ? chunk.value : Buffer.from(chunk.value as Uint8Array));
        continue;
      }
      yield event;
      if (event.kind === 'end') return;
    }
  } finally {
    await it.return?.();
  }
}
