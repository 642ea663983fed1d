/**
 * A streaming filter placed between a plain SQL dump and `psql -X -v ON_ERROR_STOP=1`.
 *
 * It guarantees that no psql meta-command (`\! cmd`, `\copy`, `\o`, `\i`, `\set`, `\gexec`, ...)
 * from the dump ever reaches psql, drops the few statements that must not run against the
 * temporary target database (CREATE/ALTER/DROP/COMMENT ON DATABASE, ownership and privileges),
 * and detects pg_dump output that was cut off.
 *
 * How meta-commands are found: psql executes a backslash found anywhere outside quotes and
 * comments, so the only reliable way to know where quotes are is to lex the input exactly like
 * psql does (src/fe_utils/psqlscan.l): `--` and nested `/* *\/` comments, '...' strings (with
 * quote continuation), E'...' strings with backslash escapes, B'', X'', U&'', "identifiers",
 * U&"identifiers", dollar quotes, psql variables (`:name`), and COPY ... FROM STDIN data blocks,
 * which psql reads raw up to a `\.` line. psql lexes each input line separately, and whether a
 * plain '...' string honours backslash escapes depends on `standard_conforming_strings`, which a
 * script can change at any statement (SET, set_config() in any function, ...) and which psql
 * picks up from the server for the next line. So the lexer is run as a small set of parallel
 * states: one with standard_conforming_strings on, one with it off, and at the end of every line
 * on which a statement was sent each state also continues with the setting flipped (identical
 * states are merged, so this normally stays at two). A meta-command found by any state is
 * refused: refuse rather than miss. Constructs that psql versions lex differently (`1e'...'`,
 * `1e5$$`, a vertical tab between strings) are refused as well, and so are NUL bytes (psql
 * silently truncates lines at them).
 *
 * Limit: psql lexes in the client encoding. Under SJIS, BIG5, GBK, UHC, GB18030 or JOHAB it hides
 * the byte after a non-ASCII lead byte, which can hide a quote. This lexer assumes an ASCII-safe
 * encoding (UTF-8, LATIN*, EUC_*, ...); a dump that switches client_encoding to one of those six
 * can still get a meta-command past it.
 *
 * Everything works on Buffers, byte by byte with indexOf fast paths; memory is bounded: only the
 * first bytes of a statement (at most 512, or 4 KiB for ALTER) are held back while deciding
 * whether to drop it.
 */
import { Transform, type TransformCallback } from 'node:stream';

import { InvalidInputError } from '../../../core/errors.js';

export interface PsqlGuardResult {
  /** The input starts like pg_dump plain output (`--\n-- PostgreSQL database dump\n--`). */
  pgDump: boolean;
  /** The input ends with pg_dump's closing `-- PostgreSQL database dump complete` line. */
  complete: boolean;
  /** Statements removed: CREATE/ALTER/DROP/COMMENT ON DATABASE, ALTER ... OWNER TO, GRANT, REVOKE, ... */
  droppedStatements: number;
  /** `\restrict`, `\unrestrict`, `\connect` and `\c` lines removed. */
  droppedMetaCommands: number;
  /** Lines in the input. */
  lines: number;
}

// ---------------------------------------------------------------------------------------------
// Character classes

const C_IDSTART = 1; // [A-Za-z_\x80-\xff]
const C_IDCONT = 2; // [A-Za-z_\x80-\xff0-9$]
const C_VAR = 4; // [A-Za-z_\x80-\xff0-9] (psql variable names, dollar-quote tag continuation)
const C_DIGIT = 8;
const C_SPACE = 16;

const CC = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c >= 0x80;
  if (letter) CC[c] = C_IDSTART | C_IDCONT | C_VAR;
  if (c >= 48 && c <= 57) CC[c] = C_IDCONT | C_VAR | C_DIGIT;
}
CC[36] = C_IDCONT;
for (const c of [32, 9, 10, 13, 12, 11]) CC[c] = C_SPACE;

/** A refusal tied to an input line, so that the earliest of several problems is the one reported. */
class GuardError extends InvalidInputError {
  constructor(
    message: string,
    hint: string,
    /** Byte offset in the input. */
    readonly offset: number,
  ) {
    super(message, { hint });
  }
}

function lower(c: number): number {
  return c >= 65 && c <= 90 ? c | 0x20 : c;
}

function countNewlines(buf: Buffer, from: number, to: number): number {
  let n = 0;
  let i = buf.indexOf(10, from);
  while (i !== -1 && i < to) {
    n++;
    i = buf.indexOf(10, i + 1);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Keywords the guard cares about

const K_OTHER_WORD = 0;
const K_CREATE = 1;
const K_OR = 2;
const K_REPLACE = 3;
const K_FUNCTION = 4;
const K_PROCEDURE = 5;
const K_BEGIN = 6;
const K_CASE = 7;
const K_END = 8;
const K_COPY = 9;
const K_FROM = 10;
const K_TO = 11;
const K_STDIN = 12;
const K_STDOUT = 13;
const K_PROGRAM = 14;
const K_GRANT = 15;
const K_REVOKE = 16;
const K_ALTER = 17;
const K_DROP = 18;
const K_COMMENT = 19;
const K_ON = 20;
const K_DATABASE = 21;
const K_OWNER = 22;
const K_DEFAULT = 23;
const K_SET = 24;
const K_RESET = 25;
const K_SESSION = 26;
const K_AUTHORIZATION = 27;
const K_ROLE = 28;
const K_USER = 29;
const K_IN = 30;
const K_RENAME = 31;
const K_COLUMN = 32;
const K_CONSTRAINT = 33;
const K_ATTRIBUTE = 34;
/** Non-word tokens reported to the statement policy. */
const TK_OTHER = -1;
const TK_STRING = -2;
const TK_QUOTED_IDENT = -3;

const KEYWORDS = new Map<string, number>([
  ['create', K_CREATE],
  ['or', K_OR],
  ['replace', K_REPLACE],
  ['function', K_FUNCTION],
  ['procedure', K_PROCEDURE],
  ['begin', K_BEGIN],
  ['case', K_CASE],
  ['end', K_END],
  ['copy', K_COPY],
  ['from', K_FROM],
  ['to', K_TO],
  ['stdin', K_STDIN],
  ['stdout', K_STDOUT],
  ['program', K_PROGRAM],
  ['grant', K_GRANT],
  ['revoke', K_REVOKE],
  ['alter', K_ALTER],
  ['drop', K_DROP],
  ['comment', K_COMMENT],
  ['on', K_ON],
  ['database', K_DATABASE],
  ['owner', K_OWNER],
  ['default', K_DEFAULT],
  ['set', K_SET],
  ['reset', K_RESET],
  ['session', K_SESSION],
  ['authorization', K_AUTHORIZATION],
  ['role', K_ROLE],
  ['user', K_USER],
  ['in', K_IN],
  ['rename', K_RENAME],
  ['column', K_COLUMN],
  ['constraint', K_CONSTRAINT],
  ['attribute', K_ATTRIBUTE],
]);
const MAX_KEYWORD = 16;

/** Keywords by length, as bytes, for an allocation-free lookup. */
const KEYWORDS_BY_LENGTH: [Uint8Array, number][][] = Array.from({ length: MAX_KEYWORD + 1 }, () => []);
for (const [word, code] of KEYWORDS) KEYWORDS_BY_LENGTH[word.length]!.push([Buffer.from(word, 'latin1'), code]);

function keywordCode(bytes: Uint8Array, length: number): number {
  if (length > MAX_KEYWORD) return K_OTHER_WORD;
  for (const [word, code] of KEYWORDS_BY_LENGTH[length]!) {
    let k = 0;
    while (k < length && word[k] === bytes[k]) k++;
    if (k === length) return code;
  }
  return K_OTHER_WORD;
}

// ---------------------------------------------------------------------------------------------
// The lexer

const MODE_STD = 0; // standard_conforming_strings = on: '...' treats backslash literally
const MODE_ESC = 1; // standard_conforming_strings = off: '...' honours backslash escapes

const ST_INIT = 0;
const ST_LINE_COMMENT = 1;
const ST_BLOCK_COMMENT = 2;
const ST_XQ = 3; // '...' with standard strings
const ST_XE = 4; // E'...' (or '...' with escapes)
const ST_XE_ESCAPE = 5; // after a backslash in ST_XE
const ST_XB = 6; // B'...' / X'...': no '' doubling
const ST_XUS = 7; // U&'...'
const ST_XD = 8; // "..." and U&"..."
const ST_XD_QUOTE = 9; // saw a " in ST_XD: end or doubled
const ST_DOLLAR = 10; // inside $tag$...$tag$
const ST_QUOTE_STOP = 11; // after the closing quote of a string: continuation?
const ST_META = 12; // after a backslash: reading the meta-command name
const ST_META_LINE = 13; // skipping the rest of a dropped meta-command line

const P_NONE = 0;
const P_DASH = 1;
const P_SLASH = 2;
const P_COLON = 3;
const P_DOLLAR = 4;
const P_U_AMP = 5;
const P_NUM_E = 6;
const P_NUM_E_SIGN = 7;
const P_DOT = 8;

const T_NONE = 0;
const T_IDENT = 1;
const T_NUM = 2;
const T_PARAM = 3;
const T_VAR = 4;

const TAG_MAX = 1024;
const COPY_END = Buffer.from('\n\\.', 'latin1');
const META_NAME_MAX = 32;

/** Events the statement policy receives from the primary lexer. Positions index the buffer being lexed; -1 is before it. */
interface LexerHooks {
  /** Whether word()/token() events are wanted now. */
  want: boolean;
  statementStart(pos: number): void;
  statementEnd(pos: number): void;
  word(code: number, pos: number): void;
  token(kind: number, pos: number): void;
  commentStart(pos: number, lineComment: boolean): void;
  lineCommentEnd(pos: number): void;
  backslash(pos: number): void;
  /** A meta-command name is complete; return true to drop its line, false to refuse it. */
  meta(name: string, start: number): boolean;
  metaLineEnd(pos: number): void;
  copyStart(pos: number): void;
  copyEnd(pos: number): void;
}

function stdModeNote(mode: number): string {
  return mode === MODE_ESC ? ' (it is outside quotes when standard_conforming_strings is off, which a dump can switch)' : '';
}

class Lexer {
  mode: number;
  readonly forking: boolean;
  hooks: LexerHooks | null;
  /** Maps a position in the buffer being lexed to a 1-based input line, for messages. */
  where: (pos: number) => number = () => 1;
  /** Maps a position in the buffer being lexed to a byte offset in the input. */
  at: (pos: number) => number = () => 0;

  st = ST_INIT;
  pend = P_NONE;
  tok = T_NONE;
  tokLen = 0;
  tokFirst = 0;
  tokAfterNum = false;
  numDot = false;
  numExp = false;
  eSign = 0;
  uAfterNum = false;
  wbuf = new Uint8Array(MAX_KEYWORD);
  wlen = 0;
  brk = false;

  xcDepth = 0;
  bcPend = 0; // 1: saw '*', 2: saw '/'
  strKind = ST_XQ;
  qsFirst = false;
  qsNewline = false;
  qsDash = false;
  qsComment = false;

  dtag = new Uint8Array(TAG_MAX);
  dtLen = 0;
  tag = new Uint8Array(TAG_MAX);
  tagLen = 0;
  dqCand = false;
  dqK = 0;
  dqOk = false;

  metaName = new Uint8Array(META_NAME_MAX);
  metaLen = 0;
  metaStart = 0;
  metaLine = 0;
  metaOffset = 0;
  /** Where in the buffer being lexed an error was raised. */
  errPos = 0;

  paren = 0;
  begin = 0;
  sig = false;
  sigCount = 0;
  idCount = 0;
  id0 = 0;
  id1 = 0;
  id2 = 0;
  id3 = 0;
  routine = false;
  isCopy = false;
  copyPrev = 0; // 1: after FROM, 2: after TO
  copyIn = false;

  pendingCopy = 0;
  inCopy = false;
  cpos = 0; // COPY data: -1 mid-line, 0 line start, 1 '\', 2 '\.', 3 '\.\r'
  sentThisLine = false;
  forkPending = false;

  constructor(mode: number, forking: boolean, hooks: LexerHooks | null) {
    this.mode = mode;
    this.forking = forking;
    this.hooks = hooks;
  }

  // -- errors ---------------------------------------------------------------------------------

  fail(message: string, hint: string, pos: number): never {
    this.errPos = pos;
    throw new GuardError(message.replace('%LINE%', String(this.where(pos))), hint, this.at(pos));
  }

  private failMeta(name: string, pos: number): never {
    this.errPos = pos;
    throw new GuardError(
      `the dump contains the psql meta-command \\${name} at line ${this.metaLine}; divio never runs meta-commands from a dump`,
      `remove that line from the file, or export the database with pg_dump (plain or custom format)${stdModeNote(this.mode)}`,
      this.metaOffset,
    );
  }

  private failAmbiguous(what: string, pos: number): never {
    this.fail(
      `the dump has SQL at line %LINE% that psql versions lex differently (${what}); divio refuses it rather than guess where quoted text ends`,
      'edit that line (e.g. put a space between a number and a quoted string), or export the database with pg_dump -Fc',
      pos,
    );
  }

  // -- state copies for the parallel states ---------------------------------------------------

  clone(mode: number): Lexer {
    const l = new Lexer(mode, this.forking, this.hooks);
    l.where = this.where;
    l.at = this.at;
    l.st = this.st;
    l.pend = this.pend;
    l.tok = this.tok;
    l.tokLen = this.tokLen;
    l.tokFirst = this.tokFirst;
    l.tokAfterNum = this.tokAfterNum;
    l.numDot = this.numDot;
    l.numExp = this.numExp;
    l.eSign = this.eSign;
    l.uAfterNum = this.uAfterNum;
    l.wbuf.set(this.wbuf);
    l.wlen = this.wlen;
    l.xcDepth = this.xcDepth;
    l.bcPend = this.bcPend;
    l.strKind = this.strKind;
    l.qsFirst = this.qsFirst;
    l.qsNewline = this.qsNewline;
    l.qsDash = this.qsDash;
    l.qsComment = this.qsComment;
    l.dtag.set(this.dtag.subarray(0, Math.min(this.dtLen, TAG_MAX)));
    l.dtLen = this.dtLen;
    l.tag.set(this.tag.subarray(0, this.tagLen));
    l.tagLen = this.tagLen;
    l.dqCand = this.dqCand;
    l.dqK = this.dqK;
    l.dqOk = this.dqOk;
    l.metaName.set(this.metaName);
    l.metaLen = this.metaLen;
    l.metaStart = this.metaStart;
    l.metaLine = this.metaLine;
    l.metaOffset = this.metaOffset;
    l.paren = this.paren;
    l.begin = this.begin;
    l.sig = this.sig;
    l.sigCount = this.sigCount;
    l.idCount = this.idCount;
    l.id0 = this.id0;
    l.id1 = this.id1;
    l.id2 = this.id2;
    l.id3 = this.id3;
    l.routine = this.routine;
    l.isCopy = this.isCopy;
    l.copyPrev = this.copyPrev;
    l.copyIn = this.copyIn;
    l.pendingCopy = this.pendingCopy;
    l.inCopy = this.inCopy;
    l.cpos = this.cpos;
    l.sentThisLine = this.sentThisLine;
    l.forkPending = this.forkPending;
    return l;
  }

  /** Same lexing state, ignoring the string mode. */
  sameState(o: Lexer): boolean {
    if (
      this.st !== o.st ||
      this.pend !== o.pend ||
      this.tok !== o.tok ||
      this.paren !== o.paren ||
      this.begin !== o.begin ||
      this.sig !== o.sig ||
      Math.min(this.sigCount, 2) !== Math.min(o.sigCount, 2) ||
      Math.min(this.idCount, 5) !== Math.min(o.idCount, 5) ||
      this.id0 !== o.id0 ||
      this.id1 !== o.id1 ||
      this.id2 !== o.id2 ||
      this.id3 !== o.id3 ||
      this.routine !== o.routine ||
      this.isCopy !== o.isCopy ||
      this.copyPrev !== o.copyPrev ||
      this.copyIn !== o.copyIn ||
      this.pendingCopy !== o.pendingCopy ||
      this.inCopy !== o.inCopy ||
      this.cpos !== o.cpos ||
      this.sentThisLine !== o.sentThisLine
    ) {
      return false;
    }
    if (this.tok !== T_NONE) {
      if (this.tokLen !== o.tokLen || this.tokFirst !== o.tokFirst || this.tokAfterNum !== o.tokAfterNum) return false;
      if (this.numDot !== o.numDot || this.numExp !== o.numExp || this.wlen !== o.wlen) return false;
      for (let k = 0; k < Math.min(this.wlen, MAX_KEYWORD); k++) if (this.wbuf[k] !== o.wbuf[k]) return false;
    }
    if (this.pend !== P_NONE) {
      if (this.eSign !== o.eSign || this.uAfterNum !== o.uAfterNum || this.dtLen !== o.dtLen) return false;
      for (let k = 0; k < Math.min(this.dtLen, TAG_MAX); k++) if (this.dtag[k] !== o.dtag[k]) return false;
    }
    switch (this.st) {
      case ST_BLOCK_COMMENT:
        return this.xcDepth === o.xcDepth && this.bcPend === o.bcPend;
      case ST_QUOTE_STOP:
        return (
          this.strKind === o.strKind &&
          this.qsFirst === o.qsFirst &&
          this.qsNewline === o.qsNewline &&
          this.qsDash === o.qsDash &&
          this.qsComment === o.qsComment
        );
      case ST_DOLLAR:
        if (this.dqCand !== o.dqCand || this.dqK !== o.dqK || this.dqOk !== o.dqOk || this.tagLen !== o.tagLen) return false;
        for (let k = 0; k < this.tagLen; k++) if (this.tag[k] !== o.tag[k]) return false;
        return true;
      case ST_META:
        return false;
      default:
        return true;
    }
  }

  // -- driving --------------------------------------------------------------------------------

  /**
   * Lexes buf[start, end). Returns where it stopped: `end`, or (for forking lexers) just after a
   * newline ending a line on which a statement was sent, with `forkPending` set.
   */
  run(buf: Buffer, start: number, end: number): number {
    let i = start;
    while (i < end) {
      if (this.inCopy) {
        i = this.copyData(buf, i, end);
        continue;
      }
      let nl = -1;
      if (this.pendingCopy > 0 || (this.forking && this.sentThisLine)) {
        nl = buf.indexOf(10, i);
        if (nl >= end) nl = -1;
      }
      const limit = nl === -1 ? end : nl + 1;
      i = this.lex(buf, i, limit);
      if (nl !== -1 && i === limit) {
        // End of a line.
        if (this.pendingCopy > 0) {
          this.inCopy = true;
          this.cpos = 0;
          this.hooks?.copyStart(i);
        }
        if (this.forking && this.sentThisLine) {
          this.sentThisLine = false;
          this.forkPending = true;
          break;
        }
      }
    }
    return i;
  }

  /** COPY ... FROM STDIN data: raw lines up to one that is exactly `\.` (psql's copy.c). */
  private copyData(buf: Buffer, i: number, end: number): number {
    while (i < end) {
      const cpos = this.cpos;
      if (cpos === -1) {
        // Mid-line: jump to the next line that starts with `\.`.
        const j = buf.indexOf(COPY_END, i);
        if (j !== -1 && j + 3 <= end) {
          this.cpos = 2;
          i = j + 3;
          continue;
        }
        if (buf[end - 1] === 10) this.cpos = 0;
        else if (end - 2 >= i && buf[end - 2] === 10 && buf[end - 1] === 92) this.cpos = 1;
        return end;
      }
      const c = buf[i]!;
      if (cpos === 0) {
        if (c === 92) {
          this.cpos = 1;
          i++;
        } else {
          this.cpos = -1;
        }
      } else if (cpos === 1) {
        if (c === 46) {
          this.cpos = 2;
          i++;
        } else {
          this.cpos = -1;
        }
      } else if (cpos === 2 && c === 13) {
        this.cpos = 3;
        i++;
      } else if (c === 10) {
        // a `\.` line: end of this data block
        i++;
        this.pendingCopy--;
        this.cpos = 0;
        if (this.pendingCopy === 0) {
          // (several COPY ... FROM STDIN on one line read their blocks one after the other)
          this.inCopy = false;
          this.hooks?.copyEnd(i);
          return i;
        }
      } else {
        this.cpos = -1;
      }
    }
    return i;
  }

  private lex(buf: Buffer, i: number, end: number): number {
    while (i < end) {
      switch (this.st) {
        case ST_INIT: {
          if (this.pend === P_NONE) {
            // Fast paths for runs of identifier characters, digits and whitespace.
            const tok = this.tok;
            const cls = CC[buf[i]!]!;
            if (tok === T_IDENT && cls & C_IDCONT) {
              let j = i;
              let wlen = this.wlen;
              const wbuf = this.wbuf;
              while (j < end) {
                const d = buf[j]!;
                if (!(CC[d]! & C_IDCONT)) break;
                if (wlen < MAX_KEYWORD) wbuf[wlen] = lower(d);
                wlen++;
                j++;
              }
              this.tokLen += j - i;
              this.wlen = wlen;
              i = j;
              break;
            }
            if (tok === T_NONE && cls & C_SPACE) {
              i++;
              while (i < end && CC[buf[i]!]! & C_SPACE) i++;
              break;
            }
            if ((tok === T_NUM || tok === T_PARAM) && cls & C_DIGIT) {
              i++;
              while (i < end && CC[buf[i]!]! & C_DIGIT) i++;
              break;
            }
          }
          this.initByte(buf, i);
          i++;
          if (this.brk) {
            this.brk = false;
            return i;
          }
          break;
        }
        case ST_LINE_COMMENT: {
          while (i < end) {
            const c = buf[i]!;
            if (c === 10 || c === 13) {
              this.st = ST_INIT;
              this.hooks?.lineCommentEnd(i);
              break;
            }
            i++;
          }
          break;
        }
        case ST_BLOCK_COMMENT:
          i = this.blockComment(buf, i, end);
          break;
        case ST_XQ:
        case ST_XB:
        case ST_XUS: {
          const j = buf.indexOf(39, i);
          if (j === -1 || j >= end) return end;
          this.quoteStop(this.st);
          i = j + 1;
          break;
        }
        case ST_XE: {
          for (; i < end; i++) {
            const c = buf[i]!;
            if (c === 92) {
              this.st = ST_XE_ESCAPE;
              i++;
              break;
            }
            if (c === 39) {
              this.quoteStop(ST_XE);
              i++;
              break;
            }
          }
          break;
        }
        case ST_XE_ESCAPE:
          this.st = ST_XE;
          i++;
          break;
        case ST_XD: {
          const j = buf.indexOf(34, i);
          if (j === -1 || j >= end) return end;
          this.st = ST_XD_QUOTE;
          i = j + 1;
          break;
        }
        case ST_XD_QUOTE:
          if (buf[i] === 34) {
            this.st = ST_XD;
            i++;
          } else {
            this.st = ST_INIT;
          }
          break;
        case ST_DOLLAR:
          i = this.dollarBody(buf, i, end);
          break;
        case ST_QUOTE_STOP:
          i = this.quoteStopByte(buf, i);
          break;
        case ST_META:
          i = this.metaByte(buf, i);
          break;
        case ST_META_LINE: {
          const j = buf.indexOf(10, i);
          if (j === -1 || j >= end) return end;
          this.st = ST_INIT;
          this.hooks?.metaLineEnd(j);
          i = j + 1;
          break;
        }
      }
    }
    return i;
  }

  /** End of input: settle what was pending. */
  finish(): void {
    if (this.inCopy) return;
    switch (this.st) {
      case ST_INIT: {
        const pend = this.pend;
        this.pend = P_NONE;
        if (pend === P_DASH || pend === P_SLASH) {
          this.significant(-1);
        } else if (pend === P_U_AMP) {
          this.endWord(-1);
        } else if (pend === P_DOLLAR && this.dtLen > 0) {
          this.relexTag();
        }
        if (this.tok === T_IDENT) this.endWord(-1);
        this.tok = T_NONE;
        break;
      }
      case ST_META:
        this.finishMeta(-1);
        break;
      case ST_LINE_COMMENT:
        this.hooks?.lineCommentEnd(-1);
        break;
      default:
        break;
    }
  }

  // -- statement tracking ---------------------------------------------------------------------

  private significant(pos: number): void {
    if (!this.sig) {
      this.sig = true;
      this.hooks?.statementStart(pos);
    }
    this.sigCount++;
  }

  private tokenEvent(kind: number, pos: number): void {
    if (this.paren !== 0) return;
    if (this.isCopy) this.copyPrev = 0;
    if (this.hooks !== null && this.hooks.want) this.hooks.token(kind, pos);
  }

  private endWord(pos: number): void {
    this.tok = T_NONE;
    if (this.paren !== 0) return;
    const hooks = this.hooks;
    const wantsWords = hooks !== null && hooks.want;
    if (!(this.idCount < 4 || this.routine || this.isCopy || this.sigCount === 1 || wantsWords)) {
      this.idCount++;
      return;
    }
    const code = keywordCode(this.wbuf, this.wlen);
    // psql's tracking of CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ... END (psqlscan.l).
    if (this.idCount < 4) {
      const tracked = code === K_CREATE || code === K_OR || code === K_REPLACE || code === K_FUNCTION || code === K_PROCEDURE ? code : 0;
      if (this.idCount === 0) this.id0 = tracked;
      else if (this.idCount === 1) this.id1 = tracked;
      else if (this.idCount === 2) this.id2 = tracked;
      else this.id3 = tracked;
      this.routine =
        this.id0 === K_CREATE &&
        (this.id1 === K_FUNCTION ||
          this.id1 === K_PROCEDURE ||
          (this.id1 === K_OR && this.id2 === K_REPLACE && (this.id3 === K_FUNCTION || this.id3 === K_PROCEDURE)));
    }
    this.idCount++;
    if (this.routine) {
      if (code === K_BEGIN) this.begin++;
      else if (code === K_CASE) {
        if (this.begin >= 1) this.begin++;
      } else if (code === K_END) {
        if (this.begin > 0) this.begin--;
      }
    }
    if (this.sigCount === 1 && code === K_COPY) {
      this.isCopy = true;
      this.copyPrev = 0;
    } else if (this.isCopy) {
      if (code === K_FROM) this.copyPrev = 1;
      else if (code === K_TO) this.copyPrev = 2;
      else {
        if (this.copyPrev === 1 && (code === K_STDIN || code === K_STDOUT)) this.copyIn = true;
        if (this.copyPrev !== 0 && code === K_PROGRAM) {
          this.fail(
            'the dump runs a shell command on the database server (COPY ... PROGRAM) at line %LINE%; divio refuses it',
            'remove that statement from the dump',
            pos < 0 ? -1 : pos,
          );
        }
        this.copyPrev = 0;
      }
    }
    if (wantsWords) hooks.word(code, pos);
  }

  private statementEnd(pos: number): void {
    if (this.isCopy && this.copyIn) this.pendingCopy++;
    this.sentThisLine = true;
    this.hooks?.statementEnd(pos);
    this.sig = false;
    this.sigCount = 0;
    this.idCount = 0;
    this.id0 = this.id1 = this.id2 = this.id3 = 0;
    this.routine = false;
    this.isCopy = false;
    this.copyPrev = 0;
    this.copyIn = false;
  }

  // -- INITIAL --------------------------------------------------------------------------------

  private initByte(buf: Buffer, i: number): void {
    const c = buf[i]!;
    const cls = CC[c]!;
    if (this.pend !== P_NONE) {
      const pend = this.pend;
      this.pend = P_NONE;
      switch (pend) {
        case P_DASH:
          if (c === 45) {
            this.st = ST_LINE_COMMENT;
            this.hooks?.commentStart(i - 1, true);
            return;
          }
          this.significant(i - 1);
          this.tokenEvent(TK_OTHER, i - 1);
          break;
        case P_SLASH:
          if (c === 42) {
            this.st = ST_BLOCK_COMMENT;
            this.xcDepth = 0;
            this.bcPend = 0;
            this.hooks?.commentStart(i - 1, false);
            return;
          }
          this.significant(i - 1);
          this.tokenEvent(TK_OTHER, i - 1);
          break;
        case P_COLON:
          if (c === 58) return; // '::'
          if (cls & C_VAR) {
            this.tok = T_VAR; // :name (psql variable)
            return;
          }
          break;
        case P_DOLLAR:
          if (this.dollarStartByte(c, cls, i)) return;
          break;
        case P_U_AMP:
          if (c === 39 || c === 34) {
            if (this.uAfterNum) this.failAmbiguous("a number directly followed by U&'", i);
            this.tok = T_NONE;
            this.st = c === 39 ? ST_XUS : ST_XD;
            this.tokenEvent(c === 39 ? TK_STRING : TK_QUOTED_IDENT, i);
            return;
          }
          this.endWord(i - 1);
          this.tokenEvent(TK_OTHER, i - 1);
          break;
        case P_NUM_E:
          if (cls & C_DIGIT) {
            this.tok = T_NUM;
            this.numExp = true;
            return;
          }
          if (c === 43 || c === 45) {
            this.pend = P_NUM_E_SIGN;
            this.eSign = c;
            return;
          }
          if (c === 39) this.failAmbiguous("a number directly followed by e'", i);
          if (cls & C_IDCONT) {
            this.tok = T_IDENT;
            this.tokLen = 2;
            this.tokFirst = 101;
            this.tokAfterNum = true;
            this.wlen = MAX_KEYWORD + 1;
            return;
          }
          break;
        case P_NUM_E_SIGN:
          if (cls & C_DIGIT) {
            this.tok = T_NUM;
            this.numExp = true;
            return;
          }
          if (this.eSign === 45 && c === 45) this.failAmbiguous('a number directly followed by e--', i);
          break;
        case P_DOT:
          if (cls & C_DIGIT) {
            this.tok = T_NUM;
            this.numDot = true;
            this.numExp = false;
            return;
          }
          break;
      }
    }

    // Continue (or end) the current identifier / number / variable.
    const tok = this.tok;
    if (tok === T_IDENT) {
      if (cls & C_IDCONT) {
        this.tokLen++;
        if (this.wlen < MAX_KEYWORD) this.wbuf[this.wlen] = lower(c);
        this.wlen++;
        return;
      }
      if (this.tokLen === 1) {
        const f = this.tokFirst | 0x20;
        if (c === 39 && (f === 101 || f === 98 || f === 120 || f === 110)) {
          // E'...', B'...', X'...', N'...'
          if (this.tokAfterNum && f !== 110) this.failAmbiguous(`a number directly followed by ${String.fromCharCode(f)}'`, i);
          this.tok = T_NONE;
          this.st = f === 101 ? ST_XE : f === 110 ? (this.mode === MODE_STD ? ST_XQ : ST_XE) : ST_XB;
          this.tokenEvent(TK_STRING, i);
          return;
        }
        if (c === 38 && f === 117) {
          // U& — a string or identifier prefix if a quote follows
          this.pend = P_U_AMP;
          this.uAfterNum = this.tokAfterNum;
          return;
        }
      }
      this.endWord(i);
    } else if (tok === T_VAR) {
      if (cls & C_VAR) {
        return;
      }
      this.tok = T_NONE;
    } else if (tok !== T_NONE) {
      // T_NUM or T_PARAM
      if (cls & C_DIGIT) return;
      // psql 15+ reads 1e5$$ as one (junk) token, older psql as 1e5 followed by a dollar quote
      if (c === 36 && this.numExp) this.failAmbiguous('a number with an exponent directly followed by $', i);
      if (tok === T_NUM && c === 46) {
        if (!this.numDot && !this.numExp) {
          this.numDot = true;
          return;
        }
        this.tok = T_NONE;
        this.pend = P_DOT;
        this.tokenEvent(TK_OTHER, i);
        return;
      }
      if (cls & C_IDSTART) {
        if (tok === T_NUM && !this.numExp && (c | 0x20) === 101) {
          this.tok = T_NONE;
          this.pend = P_NUM_E;
          return;
        }
        // trailing junk (PostgreSQL 15+) or a new identifier (older psql): either way no prefix
        this.tok = T_IDENT;
        this.tokLen = 1;
        this.tokFirst = c;
        this.tokAfterNum = true;
        this.wlen = MAX_KEYWORD + 1;
        return;
      }
      this.tok = T_NONE;
    }

    if (cls & C_SPACE) return;
    if (cls & C_IDSTART) {
      this.significant(i);
      this.tok = T_IDENT;
      this.tokLen = 1;
      this.tokFirst = c;
      this.tokAfterNum = false;
      this.wbuf[0] = lower(c);
      this.wlen = 1;
      return;
    }
    if (cls & C_DIGIT) {
      this.significant(i);
      this.tok = T_NUM;
      this.numDot = false;
      this.numExp = false;
      this.tokenEvent(TK_OTHER, i);
      return;
    }
    switch (c) {
      case 45: // -
        this.pend = P_DASH;
        return;
      case 47: // /
        this.pend = P_SLASH;
        return;
      case 39: // '
        this.significant(i);
        this.st = this.mode === MODE_STD ? ST_XQ : ST_XE;
        this.tokenEvent(TK_STRING, i);
        return;
      case 34: // "
        this.significant(i);
        this.st = ST_XD;
        this.tokenEvent(TK_QUOTED_IDENT, i);
        return;
      case 36: // $
        this.significant(i);
        this.pend = P_DOLLAR;
        this.dtLen = 0;
        this.tokenEvent(TK_STRING, i);
        return;
      case 58: // :
        this.significant(i);
        this.pend = P_COLON;
        this.tokenEvent(TK_OTHER, i);
        return;
      case 92: // backslash: a psql meta-command
        this.st = ST_META;
        this.metaLen = 0;
        this.metaStart = i;
        this.metaLine = this.where(i);
        this.metaOffset = this.at(i);
        this.hooks?.backslash(i);
        return;
      case 40: // (
        this.significant(i);
        this.tokenEvent(TK_OTHER, i);
        this.paren++;
        return;
      case 41: // )
        this.significant(i);
        if (this.paren > 0) this.paren--;
        this.tokenEvent(TK_OTHER, i);
        return;
      case 59: // ;
        this.significant(i);
        if (this.paren === 0 && this.begin === 0) {
          this.statementEnd(i);
          this.brk = true;
        }
        return;
      case 46: // .
        this.significant(i);
        this.pend = P_DOT;
        this.tokenEvent(TK_OTHER, i);
        return;
      default:
        this.significant(i);
        this.tokenEvent(TK_OTHER, i);
        return;
    }
  }

  /** After a `$` in INITIAL: a dollar-quote delimiter, a parameter ($1), or a lone `$`. Returns whether c was consumed. */
  private dollarStartByte(c: number, cls: number, i: number): boolean {
    const n = this.dtLen;
    if (c === 36) {
      if (n > TAG_MAX) this.fail('the dump has a dollar-quote tag longer than 1024 bytes at line %LINE%', 'shorten the tag', i);
      this.tag.set(this.dtag.subarray(0, n));
      this.tagLen = n;
      this.st = ST_DOLLAR;
      this.dqCand = false;
      return true;
    }
    if (n === 0) {
      if (cls & C_DIGIT) {
        this.tok = T_PARAM;
        return true;
      }
      if (!(cls & C_IDSTART)) return false;
    } else if (!(cls & C_VAR)) {
      // not a delimiter: psql re-reads the would-be tag as an identifier
      this.relexTag();
      return false;
    }
    if (n < TAG_MAX) this.dtag[n] = c;
    this.dtLen = n + 1;
    this.pend = P_DOLLAR;
    return true;
  }

  private relexTag(): void {
    const n = this.dtLen;
    this.tok = T_IDENT;
    this.tokLen = n;
    this.tokFirst = this.dtag[0]!;
    this.tokAfterNum = false;
    for (let k = 0; k < Math.min(n, MAX_KEYWORD); k++) this.wbuf[k] = lower(this.dtag[k]!);
    this.wlen = n;
    this.sigCount++;
  }

  // -- strings, comments, dollar quotes -------------------------------------------------------

  private quoteStop(kind: number): void {
    this.st = ST_QUOTE_STOP;
    this.strKind = kind;
    this.qsFirst = true;
    this.qsNewline = false;
    this.qsDash = false;
    this.qsComment = false;
  }

  /** psql's xqs state: after a closing quote, look for a continuation (whitespace with a newline, then a quote). */
  private quoteStopByte(buf: Buffer, i: number): number {
    const c = buf[i]!;
    if (this.qsComment) {
      if (c === 10) {
        this.st = ST_INIT; // the line ends: psql's lexer gives up the continuation
        return i;
      }
      if (c === 13) {
        this.qsComment = false;
        this.qsNewline = true;
      }
      return i + 1;
    }
    if (this.qsDash) {
      this.qsDash = false;
      if (c === 45) {
        this.qsComment = true;
        return i + 1;
      }
      this.st = ST_INIT;
      this.tokenEvent(TK_OTHER, i - 1);
      return i;
    }
    switch (c) {
      case 39:
        if ((this.qsFirst && this.strKind !== ST_XB) || this.qsNewline) {
          this.st = this.strKind; // '' inside the string, or a continuation
          return i + 1;
        }
        this.st = ST_INIT;
        return i;
      case 10:
        // psql lexes line by line without the newline: a quote right at the end of a line stays
        // in quote-stop state, anything after it on the line ends the string.
        if (this.qsFirst) {
          this.qsFirst = false;
          return i + 1;
        }
        this.st = ST_INIT;
        return i;
      case 13:
        this.qsFirst = false;
        this.qsNewline = true;
        return i + 1;
      case 32:
      case 9:
      case 12:
        this.qsFirst = false;
        return i + 1;
      case 11:
        return this.failAmbiguous('a vertical tab after a quoted string', i);
      case 45:
        this.qsFirst = false;
        this.qsDash = true;
        return i + 1;
      default:
        this.st = ST_INIT;
        return i;
    }
  }

  private blockComment(buf: Buffer, i: number, end: number): number {
    while (i < end) {
      const c = buf[i]!;
      const p = this.bcPend;
      this.bcPend = 0;
      if (p === 1 && c === 47) {
        if (this.xcDepth === 0) {
          this.st = ST_INIT;
          return i + 1;
        }
        this.xcDepth--;
        i++;
        continue;
      }
      if (p === 2 && c === 42) {
        this.xcDepth++;
        i++;
        continue;
      }
      if (c === 42) this.bcPend = 1;
      else if (c === 47) this.bcPend = 2;
      i++;
    }
    return i;
  }

  private dollarBody(buf: Buffer, i: number, end: number): number {
    const tag = this.tag;
    const tagLen = this.tagLen;
    while (i < end) {
      if (!this.dqCand) {
        const j = buf.indexOf(36, i);
        if (j === -1 || j >= end) return end;
        this.dqCand = true;
        this.dqK = 0;
        this.dqOk = true;
        i = j + 1;
        continue;
      }
      const c = buf[i]!;
      if (c === 36) {
        if (this.dqOk && this.dqK === tagLen) {
          this.st = ST_INIT;
          this.dqCand = false;
          return i + 1;
        }
        this.dqK = 0; // this $ may open the closing delimiter
        this.dqOk = true;
        i++;
        continue;
      }
      const cls = CC[c]!;
      if (this.dqK === 0 ? cls & C_IDSTART : cls & C_VAR) {
        if (this.dqOk && this.dqK < tagLen && tag[this.dqK] === c) this.dqK++;
        else {
          this.dqOk = false;
          this.dqK++;
        }
        i++;
        continue;
      }
      this.dqCand = false;
      i++;
    }
    return i;
  }

  // -- meta-commands --------------------------------------------------------------------------

  private metaByte(buf: Buffer, i: number): number {
    const c = buf[i]!;
    if (CC[c]! & C_VAR) {
      if (this.metaLen < META_NAME_MAX) this.metaName[this.metaLen] = c;
      this.metaLen++;
      return i + 1;
    }
    if (this.metaLen === 0) {
      this.metaName[0] = c; // one-character command: \! \\ \? \; ...
      this.metaLen = 1;
      this.finishMeta(i + 1);
      return i + 1;
    }
    this.finishMeta(i);
    return i;
  }

  private finishMeta(pos: number): void {
    const n = Math.min(this.metaLen, META_NAME_MAX);
    let name = n === 0 ? '' : Buffer.from(this.metaName.subarray(0, n)).toString('latin1');
    name = name.replace(/[^\x21-\x7e]/g, '?');
    if (this.metaLen > META_NAME_MAX) name += '...';
    if (this.hooks !== null && this.hooks.meta(name, this.metaStart)) {
      this.st = ST_META_LINE;
      return;
    }
    this.failMeta(name, pos);
  }
}

// ---------------------------------------------------------------------------------------------
// The parallel string-mode states (they lex the guard's OUTPUT)

const MAX_STATES = 16;

/** Where the output of one input chunk came from: output offset → input line, for messages. */
interface Output {
  buf: Buffer;
  /** Per piece: offset in `buf`, input line and input byte offset of its first byte. */
  offsets: number[];
  lines: number[];
  starts: number[];
}

class Verifier {
  lexers: Lexer[] = [new Lexer(MODE_STD, true, null), new Lexer(MODE_ESC, true, null)];

  process(output: Output): void {
    const { buf, offsets, lines, starts } = output;
    const len = buf.length;
    const piece = (p: number): number => {
      let k = offsets.length - 1;
      while (k > 0 && offsets[k]! > p) k--;
      return k;
    };
    const where = (pos: number): number => {
      const p = Math.max(0, Math.min(pos, len));
      const k = piece(p);
      return lines[k]! + countNewlines(buf, offsets[k]!, p);
    };
    const at = (pos: number): number => {
      const p = Math.max(0, Math.min(pos, len));
      const k = piece(p);
      return starts[k]! + p - offsets[k]!;
    };
    let ls = this.lexers;
    let ps = ls.map(() => 0);
    for (const l of ls) {
      l.where = where;
      l.at = at;
    }
    // The first problem in the input is the one reported, whichever state finds it.
    let failure: GuardError | null = null;
    for (;;) {
      let min = Infinity;
      let pending = false;
      for (let k = 0; k < ls.length; k++) {
        const p = ps[k]!;
        if (p < min) {
          min = p;
          pending = ls[k]!.forkPending;
        } else if (p === min && ls[k]!.forkPending) pending = true;
      }
      if (min >= len && !pending) break;
      if (pending) {
        // At the end of a line on which a statement was sent: the string mode may have changed.
        const group: Lexer[] = [];
        const nextLs: Lexer[] = [];
        const nextPs: number[] = [];
        for (let k = 0; k < ls.length; k++) {
          if (ps[k] === min) group.push(ls[k]!);
          else {
            nextLs.push(ls[k]!);
            nextPs.push(ps[k]!);
          }
        }
        for (const l of this.fork(group, min, where)) {
          nextLs.push(l);
          nextPs.push(min);
        }
        ls = nextLs;
        ps = nextPs;
        continue;
      }
      for (let k = 0; k < ls.length; k++) {
        if (ps[k] !== min) continue;
        try {
          ps[k] = ls[k]!.run(buf, min, len);
        } catch (error) {
          if (!(error instanceof GuardError)) throw error;
          if (failure === null || error.offset < failure.offset) failure = error;
          ps[k] = len; // this state is done
          ls[k]!.forkPending = false;
        }
      }
    }
    if (failure !== null) throw failure;
    const merged: Lexer[] = [];
    for (const l of ls) if (!merged.some((m) => m.mode === l.mode && m.sameState(l))) merged.push(l);
    this.lexers = merged;
  }

  private fork(group: Lexer[], pos: number, where: (pos: number) => number): Lexer[] {
    const out: Lexer[] = [];
    const has = (mode: number, l: Lexer) => out.some((m) => m.mode === mode && m.sameState(l));
    const flips: Lexer[] = [];
    for (const l of group) {
      if (l.forkPending) flips.push(l);
      l.forkPending = false;
      if (!has(l.mode, l)) out.push(l);
    }
    for (const l of flips) {
      const other = l.mode === MODE_STD ? MODE_ESC : MODE_STD;
      if (!has(other, l)) out.push(l.clone(other));
    }
    if (out.length > MAX_STATES) {
      throw new InvalidInputError(
        `the dump's quoting is too ambiguous to check safely (around line ${where(pos)}): it reads differently depending on standard_conforming_strings in too many ways`,
        { hint: 'export the database with pg_dump (plain or custom format) and import that' },
      );
    }
    return out;
  }

  finish(): void {
    for (const l of this.lexers) l.finish();
  }
}

// ---------------------------------------------------------------------------------------------
// The statement policy (driven by the primary lexer over the INPUT)

const OUT_PASS = 0;
const OUT_BUFFER = 1;
const OUT_DROP = 2;

const STMT_IDLE = 0;
const STMT_UNDECIDED = 1;
const STMT_KEEP = 2;
const STMT_DROP = 3;

const DECIDE_WAIT = 0;
const DECIDE_KEEP = 1;
const DECIDE_DROP = 2;
const DECIDE_WAIT_END = 3;

const PREFIX_LIMIT = 512;
const ALTER_LIMIT = 4096;

const ALLOWED_META = new Set(['restrict', 'unrestrict', 'connect', 'c']);
const ALLOWED_META_PREFIXES = new Set([...ALLOWED_META].flatMap((name) => Array.from({ length: name.length + 1 }, (_, k) => name.slice(0, k))));
const CLOSING_LINE = Buffer.from('-- PostgreSQL database dump complete', 'latin1');
const CAPTURE_MAX = 64;
const HEADER_BYTES = 256;

class Planner implements LexerHooks {
  readonly lexer: Lexer;
  want = false;

  private buf: Buffer = Buffer.alloc(0);
  /** Output of the current chunk, with the input line each piece starts on. */
  private pieces: Buffer[] = [];
  private pieceLines: number[] = [];
  private pieceStarts: number[] = [];
  private outMode = OUT_PASS;
  /** PASS: output runs from here. BUFFER: output runs from here up to `bufStart`. DROP: where PASS resumes. */
  private segStart = 0;
  /** BUFFER: where the undecided statement starts in this chunk. */
  private bufStart = 0;
  /** Held-back start of an undecided statement from earlier chunks. */
  private prefix: Buffer[] = [];
  private prefixLines: number[] = [];
  private prefixStarts: number[] = [];
  private prefixLen = 0;
  /** Line counting over the current chunk: line number at `cursorPos`. */
  private cursorPos = 0;
  private cursorLine = 1;
  private held = false;
  private heldPrev = 10;
  private savedOut = OUT_PASS;

  private stmt = STMT_IDLE;
  private readonly toks: number[] = [];
  private readonly last: number[] = [TK_OTHER, TK_OTHER, TK_OTHER, TK_OTHER];
  private waitEnd = false;

  private metaCol0 = false;
  private metaIdle = false;
  private capturing = false;
  private capStart = 0;
  private readonly capBuf = new Uint8Array(CAPTURE_MAX);
  private capLen = 0;
  private atEnd = false;

  droppedStatements = 0;
  droppedMetaCommands = 0;
  inLines = 0;
  inBytes = 0;
  lastByte = 10;
  closingSeen = false;

  constructor() {
    this.lexer = new Lexer(MODE_STD, false, this);
  }

  process(buf: Buffer): Output | null {
    this.buf = buf;
    this.pieces = [];
    this.pieceLines = [];
    this.pieceStarts = [];
    this.segStart = 0;
    this.bufStart = 0;
    const lines = this.inLines;
    this.cursorPos = 0;
    this.cursorLine = lines + 1;
    this.lexer.where = (pos) => lines + countNewlines(buf, 0, Math.max(0, pos)) + 1;
    const base = this.inBytes;
    this.lexer.at = (pos) => base + pos;
    this.lexer.run(buf, 0, buf.length);
    const end = buf.length;
    const lx = this.lexer;
    if (this.stmt === STMT_UNDECIDED) this.overflowed(end);
    if (
      this.outMode === OUT_PASS &&
      this.stmt === STMT_IDLE &&
      lx.st === ST_INIT &&
      !lx.inCopy &&
      (lx.pend === P_DASH || lx.pend === P_SLASH)
    ) {
      // A trailing '-' or '/' may start a comment or a statement: hold it back.
      this.emit(this.segStart, end - 1);
      this.prefix = [buf.subarray(end - 1)];
      this.prefixLines = [this.lineAt(end - 1)];
      this.prefixStarts = [this.inBytes + end - 1];
      this.prefixLen = 1;
      this.held = true;
      this.heldPrev = end >= 2 ? buf[end - 2]! : this.lastByte;
    } else if (this.outMode === OUT_PASS) {
      this.emit(this.segStart, end);
    } else if (this.outMode === OUT_BUFFER) {
      this.emit(this.segStart, this.bufStart);
      if (end > this.bufStart) {
        this.prefix.push(buf.subarray(this.bufStart, end));
        this.prefixLines.push(this.lineAt(this.bufStart));
        this.prefixStarts.push(this.inBytes + this.bufStart);
        this.prefixLen += end - this.bufStart;
      }
    }
    if (this.capturing) {
      this.capPush(buf.subarray(this.capStart, end));
      this.capStart = 0;
    }
    this.inLines = this.lineAt(end) - 1;
    this.inBytes += end;
    this.lastByte = buf[end - 1]!;
    return this.output();
  }

  finish(): Output | null {
    this.buf = Buffer.alloc(0);
    this.pieces = [];
    this.pieceLines = [];
    this.pieceStarts = [];
    this.segStart = 0;
    this.bufStart = 0;
    const line = this.inLines + (this.lastByte === 10 ? 0 : 1);
    this.lexer.where = () => Math.max(1, line);
    const total = this.inBytes;
    this.lexer.at = () => total;
    this.atEnd = true;
    this.lexer.finish();
    if (this.capturing) this.endCapture();
    if (this.stmt === STMT_UNDECIDED) this.overflowed(-1);
    if (this.stmt === STMT_UNDECIDED) {
      if (this.finalDrop()) this.dropPrefix();
      else this.flushPrefix();
    } else if (this.stmt === STMT_DROP) {
      this.droppedStatements++;
    } else {
      this.flushPrefix();
    }
    return this.output();
  }

  /** After an error in the current chunk: the output so far plus everything held back, for checking. */
  salvage(): Output | null {
    const pos = Math.max(this.lexer.errPos, this.segStart);
    if (this.outMode === OUT_PASS) this.emit(this.segStart, pos);
    else if (this.outMode === OUT_BUFFER) {
      this.emit(this.segStart, this.bufStart);
      this.flushPrefix();
      this.emit(this.bufStart, Math.max(pos, this.bufStart));
    }
    return this.output();
  }

  private output(): Output | null {
    const pieces = this.pieces;
    if (pieces.length === 0) return null;
    const offsets: number[] = [];
    let size = 0;
    for (const piece of pieces) {
      offsets.push(size);
      size += piece.length;
    }
    return {
      buf: pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, size),
      offsets,
      lines: this.pieceLines,
      starts: this.pieceStarts,
    };
  }

  /** 1-based input line of position `pos` of the current chunk (positions must not go backwards). */
  private lineAt(pos: number): number {
    if (pos > this.cursorPos) {
      this.cursorLine += countNewlines(this.buf, this.cursorPos, pos);
      this.cursorPos = pos;
    }
    return this.cursorLine;
  }

  /** Why a pg_dump file looks cut off, or null. */
  truncation(): string | null {
    const lx = this.lexer;
    if (lx.inCopy) return 'it ends inside a COPY data block (no closing \\. line)';
    if (lx.pendingCopy > 0) return 'it ends right after a COPY ... FROM stdin statement, before its data';
    switch (lx.st) {
      case ST_XQ:
      case ST_XE:
      case ST_XE_ESCAPE:
      case ST_XB:
      case ST_XUS:
        return 'it ends inside a quoted string';
      case ST_XD:
        return 'it ends inside a quoted identifier';
      case ST_BLOCK_COMMENT:
        return 'it ends inside a /* comment */';
      case ST_DOLLAR:
        return `it ends inside a dollar-quoted string ($${Buffer.from(lx.tag.subarray(0, lx.tagLen)).toString('latin1')}$)`;
      default:
        break;
    }
    if (lx.sig || lx.paren > 0 || lx.begin > 0) return 'it ends in the middle of a statement';
    return null;
  }

  // -- output segments ------------------------------------------------------------------------

  /** Appends input [start, end) of the current chunk to the output. */
  private emit(start: number, end: number): void {
    if (end <= start) return;
    this.pieces.push(this.buf.subarray(start, end));
    this.pieceLines.push(this.lineAt(start));
    this.pieceStarts.push(this.inBytes + start);
  }

  private flushPrefix(): void {
    for (let k = 0; k < this.prefix.length; k++) {
      this.pieces.push(this.prefix[k]!);
      this.pieceLines.push(this.prefixLines[k]!);
      this.pieceStarts.push(this.prefixStarts[k]!);
    }
    this.clearPrefix();
  }

  private clearPrefix(): void {
    this.prefix = [];
    this.prefixLines = [];
    this.prefixStarts = [];
    this.prefixLen = 0;
    this.held = false;
  }

  private dropPrefix(): void {
    this.clearPrefix();
    this.droppedStatements++;
  }

  private keep(_pos: number): void {
    if (this.prefixLen > 0) {
      // The statement began in an earlier chunk: its start goes out first.
      this.emit(this.segStart, this.bufStart);
      this.flushPrefix();
      this.segStart = this.bufStart;
    }
    // Otherwise the output simply runs on through the statement.
    this.outMode = OUT_PASS;
    this.stmt = STMT_KEEP;
    this.want = false;
  }

  private drop(_pos: number): void {
    this.emit(this.segStart, this.bufStart);
    this.clearPrefix();
    this.outMode = OUT_DROP;
    this.stmt = STMT_DROP;
    this.want = false;
  }

  // -- policy ---------------------------------------------------------------------------------

  private decide(): number {
    const t = this.toks;
    const n = t.length;
    switch (t[0]) {
      case K_GRANT:
      case K_REVOKE:
        return DECIDE_DROP;
      case K_CREATE:
      case K_DROP:
        if (n < 2) return DECIDE_WAIT;
        return t[1] === K_DATABASE ? DECIDE_DROP : DECIDE_KEEP;
      case K_COMMENT:
        if (n < 2) return DECIDE_WAIT;
        if (t[1] !== K_ON) return DECIDE_KEEP;
        if (n < 3) return DECIDE_WAIT;
        return t[2] === K_DATABASE ? DECIDE_DROP : DECIDE_KEEP;
      case K_SET:
      case K_RESET:
        if (n < 2) return DECIDE_WAIT;
        if (t[1] !== K_SESSION) return DECIDE_KEEP;
        if (n < 3) return DECIDE_WAIT;
        return t[2] === K_AUTHORIZATION ? DECIDE_DROP : DECIDE_KEEP;
      case K_ALTER:
        if (n < 2) return DECIDE_WAIT;
        if (t[1] === K_DATABASE || t[1] === K_DEFAULT) return DECIDE_DROP;
        if (t[1] === K_ROLE || t[1] === K_USER) {
          if (n < 4) return DECIDE_WAIT;
          if (t[3] !== K_IN) return DECIDE_KEEP;
          if (n < 5) return DECIDE_WAIT;
          return t[4] === K_DATABASE ? DECIDE_DROP : DECIDE_KEEP;
        }
        return DECIDE_WAIT_END; // ALTER ... OWNER TO role?
      default:
        return DECIDE_KEEP;
    }
  }

  private finalDrop(): boolean {
    const d = this.decide();
    if (d === DECIDE_DROP) return true;
    if (d !== DECIDE_WAIT_END) return false;
    // ALTER <object> OWNER TO <role>, but not ALTER TABLE t RENAME [COLUMN] owner TO x
    const [before, owner, to, role] = this.last;
    return (
      owner === K_OWNER &&
      to === K_TO &&
      (role! >= 0 || role === TK_QUOTED_IDENT) &&
      before !== K_RENAME &&
      before !== K_COLUMN &&
      before !== K_CONSTRAINT &&
      before !== K_ATTRIBUTE
    );
  }

  private onToken(code: number, pos: number): void {
    if (this.stmt !== STMT_UNDECIDED || this.overflowed(pos)) return;
    if (this.toks.length < 6) this.toks.push(code);
    this.last.shift();
    this.last.push(code);
    const d = this.decide();
    if (d === DECIDE_KEEP) this.keep(pos);
    else if (d === DECIDE_DROP) this.drop(pos);
    else this.waitEnd = d === DECIDE_WAIT_END;
  }

  /**
   * Bounds what is held back. Checked before every decision (and at chunk ends, which only finds
   * the same earlier), so the outcome never depends on chunk boundaries. True if it kept the statement.
   */
  private overflowed(pos: number): boolean {
    const size = this.prefixLen + Math.max(0, pos - this.bufStart);
    if (size <= (this.waitEnd ? ALTER_LIMIT : PREFIX_LIMIT)) return false;
    if (this.waitEnd || this.toks.length === 0) {
      // An ALTER that is not over by 4 KiB, or a first word longer than 512 bytes: not droppable.
      this.keep(pos);
      return true;
    }
    return this.lexer.fail(
      `the dump has a statement at line %LINE% whose first words are more than ${PREFIX_LIMIT} bytes apart; divio cannot tell whether it must be skipped`,
      'remove the comments or whitespace between its first keywords',
      pos,
    );
  }

  // -- LexerHooks -----------------------------------------------------------------------------

  statementStart(pos: number): void {
    this.closingSeen = false;
    // pos < 0: the statement starts with the byte held back at the end of the previous chunk
    this.held = false;
    this.bufStart = Math.max(pos, 0);
    this.outMode = OUT_BUFFER;
    this.stmt = STMT_UNDECIDED;
    this.want = true;
    this.toks.length = 0;
    this.last.fill(TK_OTHER);
    this.waitEnd = false;
  }

  statementEnd(pos: number): void {
    const end = pos + 1;
    if (this.stmt === STMT_UNDECIDED) this.overflowed(pos);
    if (this.stmt === STMT_UNDECIDED) {
      if (this.finalDrop()) {
        this.emit(this.segStart, this.bufStart);
        this.dropPrefix();
        this.segStart = end;
      } else {
        this.keep(end);
      }
    } else if (this.stmt === STMT_DROP) {
      this.segStart = end;
      this.droppedStatements++;
    }
    this.outMode = OUT_PASS;
    this.stmt = STMT_IDLE;
    this.want = false;
  }

  word(code: number, pos: number): void {
    this.onToken(code, pos);
  }

  token(kind: number, pos: number): void {
    this.onToken(kind, pos);
  }

  commentStart(pos: number, lineComment: boolean): void {
    if (pos < 0 && this.held) this.flushPrefix(); // the held '-' or '/' started a comment
    if (!lineComment || this.stmt !== STMT_IDLE) return;
    const prev = pos < 0 ? this.heldPrev : pos > 0 ? this.buf[pos - 1]! : this.lastByte;
    if (prev !== 10) return;
    this.capturing = true;
    this.capLen = 0;
    if (pos < 0) this.capBuf[this.capLen++] = 45; // the held '-'
    this.capStart = Math.max(pos, 0);
  }

  lineCommentEnd(pos: number): void {
    if (!this.capturing) return;
    if (pos >= 0) this.capPush(this.buf.subarray(this.capStart, pos));
    this.endCapture();
  }

  private capPush(part: Buffer): void {
    const n = Math.min(part.length, CAPTURE_MAX - this.capLen);
    this.capBuf.set(part.subarray(0, n), this.capLen);
    this.capLen += n;
  }

  private endCapture(): void {
    this.capturing = false;
    let n = this.capLen;
    while (n > 0 && (this.capBuf[n - 1] === 32 || this.capBuf[n - 1] === 9)) n--;
    if (n === CLOSING_LINE.length && CLOSING_LINE.equals(this.capBuf.subarray(0, n))) this.closingSeen = true;
  }

  backslash(pos: number): void {
    this.metaCol0 = (pos > 0 ? this.buf[pos - 1]! : this.lastByte) === 10;
    this.metaIdle = this.stmt === STMT_IDLE && !this.lexer.inCopy;
    if (this.stmt === STMT_IDLE) {
      // Dropped if allowed, refused otherwise: either way it never goes out.
      this.emit(this.segStart, pos);
      this.outMode = OUT_DROP;
    }
  }

  meta(name: string): boolean {
    // At the end of input, a cut-off `\restrict KEY` line may end anywhere in the name.
    const allowed = ALLOWED_META.has(name) || (this.atEnd && ALLOWED_META_PREFIXES.has(name));
    if (!allowed || !this.metaCol0 || !this.metaIdle) return false;
    this.droppedMetaCommands++;
    if (name !== 'unrestrict') this.closingSeen = false;
    return true;
  }

  metaLineEnd(pos: number): void {
    this.segStart = pos + 1;
    this.outMode = OUT_PASS;
  }

  copyStart(pos: number): void {
    // COPY data always goes out, even in the middle of a statement being dropped.
    if (this.stmt === STMT_UNDECIDED) this.keep(pos);
    this.savedOut = this.outMode;
    // pos follows the newline that ends the COPY line; psql needs that newline too
    if (this.outMode === OUT_DROP) this.segStart = pos - 1;
    this.outMode = OUT_PASS;
  }

  copyEnd(pos: number): void {
    if (this.savedOut === OUT_DROP) {
      this.emit(this.segStart, pos);
      this.outMode = OUT_DROP;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// pg_dump header

function headerKind(head: Buffer, final: boolean): 'pg_dump' | 'pg_dumpall' | 'other' | 'undecided' {
  const text = head.toString('latin1');
  const lines = text.split('\n');
  const complete = lines.slice(0, -1).map((l) => l.replace(/[ \t\r]+$/, ''));
  let k = 0;
  while (k < complete.length && complete[k] === '') k++;
  const needed = complete.slice(k, k + 3);
  if (needed.length < 3 && final) {
    // A file cut off inside the header.
    if (needed[0] === '--' && needed[1] === '-- PostgreSQL database dump') return 'pg_dump';
    if (needed[0] === '--' && needed[1] === '-- PostgreSQL database cluster dump') return 'pg_dumpall';
    return 'other';
  }
  if (needed.length < 3) {
    // Decide early when what we have already rules pg_dump out.
    if (needed.length >= 1 && needed[0] !== '--') return 'other';
    if (needed.length >= 2 && needed[1] !== '-- PostgreSQL database dump' && needed[1] !== '-- PostgreSQL database cluster dump') {
      return 'other';
    }
    return 'undecided';
  }
  if (needed[0] !== '--' || needed[2] !== '--') return 'other';
  if (needed[1] === '-- PostgreSQL database dump') return 'pg_dump';
  if (needed[1] === '-- PostgreSQL database cluster dump') return 'pg_dumpall';
  return 'other';
}

// ---------------------------------------------------------------------------------------------
// The Transform

/**
 * Streams plain SQL (Buffers) through to psql with meta-commands refused and unsuitable
 * statements removed. The transform errors with an InvalidInputError when the input contains a
 * meta-command other than `\restrict`, `\unrestrict`, `\connect`, `\c` at the start of a line,
 * `COPY ... PROGRAM`, something psql could read in more than one way, or when pg_dump output was
 * cut off. {@link PsqlGuard.result} is final once the stream has ended.
 */
export class PsqlGuard extends Transform {
  private readonly planner = new Planner();
  private readonly verifier = new Verifier();
  private started = false;
  private startBuf: Buffer[] = [];
  private startLen = 0;
  private headBuf: Buffer[] = [];
  private headLen = 0;
  private header: 'pg_dump' | 'pg_dumpall' | 'other' | 'undecided' = 'undecided';
  private finished = false;

  constructor() {
    super({ readableObjectMode: false, writableObjectMode: false });
  }

  /** Counts and flags; final after the stream has ended. */
  get result(): PsqlGuardResult {
    const pgDump = this.header === 'pg_dump';
    const planner = this.planner;
    const complete = planner.closingSeen && (!this.finished || planner.truncation() === null);
    return {
      pgDump,
      complete,
      droppedStatements: planner.droppedStatements,
      droppedMetaCommands: planner.droppedMetaCommands,
      lines: planner.inLines + (planner.inBytes > 0 && planner.lastByte !== 10 ? 1 : 0),
    };
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      if (!this.started) {
        // Collect 3 bytes to strip a UTF-8 BOM.
        this.startBuf.push(buf);
        this.startLen += buf.length;
        if (this.startLen < 3) {
          callback();
          return;
        }
        buf = this.begin();
      }
      this.feed(buf);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (!this.started) this.feed(this.begin());
      this.decideHeader(true);
      let output: Output | null;
      try {
        output = this.planner.finish();
      } catch (error) {
        this.earliest(error);
      }
      this.emit_(output);
      this.verifier.finish();
      this.finished = true;
      if (this.header === 'pg_dump') {
        const why = this.planner.truncation();
        if (why !== null) throw incomplete(`${why} (the file was cut off?)`);
        if (!this.planner.closingSeen) {
          throw incomplete(
            "it starts like pg_dump output but lacks its closing '-- PostgreSQL database dump complete' line (the file was cut off?)",
          );
        }
      }
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  private begin(): Buffer {
    this.started = true;
    let buf = Buffer.concat(this.startBuf, this.startLen);
    this.startBuf = [];
    if (buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3);
    return buf;
  }

  private feed(buf: Buffer): void {
    if (buf.length === 0) return;
    if (this.header === 'undecided') {
      const take = buf.subarray(0, HEADER_BYTES - this.headLen);
      this.headBuf.push(Buffer.from(take));
      this.headLen += take.length;
      this.decideHeader(this.headLen >= HEADER_BYTES);
    }
    const nul = buf.indexOf(0);
    if (nul !== -1) {
      // Whatever comes before the NUL byte is checked first: the earliest problem is reported.
      this.feed(buf.subarray(0, nul));
      throw new InvalidInputError(`the dump contains a NUL byte at line ${this.planner.inLines + 1}; plain SQL never does`, {
        hint: 'check that the file really is a plain SQL dump',
      });
    }
    let output: Output | null;
    try {
      output = this.planner.process(buf);
    } catch (error) {
      this.earliest(error);
    }
    this.emit_(output);
  }

  /** Rethrows the planner's `error`, or an earlier problem the string-mode states find in what came before it. */
  private earliest(error: unknown): never {
    if (error instanceof GuardError) {
      const before = this.planner.salvage();
      if (before !== null) {
        try {
          this.verifier.process(before);
        } catch (earlier) {
          if (earlier instanceof GuardError && earlier.offset < error.offset) throw earlier;
        }
      }
    }
    throw error;
  }

  private decideHeader(final: boolean): void {
    if (this.header !== 'undecided') return;
    const kind = headerKind(Buffer.concat(this.headBuf, this.headLen), final);
    this.header = kind === 'undecided' && final ? 'other' : kind;
    if (this.header === 'pg_dumpall') {
      throw new InvalidInputError('the dump is a pg_dumpall cluster dump (all databases and roles); divio imports one database', {
        hint: 'export the one database with pg_dump (e.g. `pg_dump -Fc DBNAME > dump.dump`) and import that',
      });
    }
  }

  private emit_(output: Output | null): void {
    if (output === null || output.buf.length === 0) return;
    this.verifier.process(output);
    this.push(output.buf);
  }
}

function incomplete(why: string): InvalidInputError {
  return new InvalidInputError(`the dump is incomplete: ${why}`, {
    hint: 'get a complete copy of the dump (download it again or re-run pg_dump) and import that',
  });
}

/** A new {@link PsqlGuard}. */
export function createPsqlGuard(): PsqlGuard {
  return new PsqlGuard();
}
