import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { neutraliseControls } from '../../src/core/terminal-text.js';

describe('neutraliseControls', () => {
  it('shows escape sequences instead of letting the terminal obey them', () => {
    expect(neutraliseControls('\u001b]0;pwned\u0007title')).toBe('^[]0;pwned^Gtitle');
    expect(neutraliseControls('ok\u001b[2K\u001b[1Afaked: deploy succeeded')).toBe('ok^[[2K^[[1Afaked: deploy succeeded');
    expect(neutraliseControls('\u009b31m')).toBe('\\x9b31m');
    expect(neutraliseControls('a\u202eb')).toBe('a\\u202eb');
    expect(neutraliseControls('del\u007f')).toBe('del^?');
  });

  it('keeps newlines and tabs, drops a CR before a newline and shows a lone one', () => {
    expect(neutraliseControls('a\tb\r\nc\n')).toBe('a\tb\nc\n');
    expect(neutraliseControls('progress 10%\rprogress 99%')).toBe('progress 10%^Mprogress 99%');
  });

  it('leaves no control character but newline and tab in any input', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const out = neutraliseControls(text);
        expect(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(out)).toBe(false);
      }),
    );
  });
});
