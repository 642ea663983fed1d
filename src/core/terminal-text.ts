/**
 * Text that apps wrote (build output, release output, runtime logs) is printed to the user's
 * terminal: an escape sequence in it could retitle the window, rewrite earlier lines to fake an
 * outcome, or (on some terminals) answer back as typed input. Such characters are shown, never
 * obeyed: C0 and C1 controls in caret or hex notation (as `cat -v` does), and bidirectional
 * overrides as \u escapes. Newlines and tabs stay; a CR before a newline is dropped.
 */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

export function neutraliseControls(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(UNSAFE, shown);
}

function shown(char: string): string {
  const code = char.charCodeAt(0);
  if (code < 0x20) return `^${String.fromCharCode(code + 0x40)}`;
  if (code === 0x7f) return '^?';
  if (code <= 0x9f) return `\\x${code.toString(16)}`;
  return `\\u${code.toString(16)}`;
}
