/** Which images a Dockerfile names, as the classic builder will resolve them (no engine needed). */
import { describe, expect, it } from 'vitest';
import { expandArgs, imageReferences } from '../../src/platform/api/deploy/dockerfile-references.js';

const refs = (text: string) => imageReferences(text).map((u) => u.reference);

describe('imageReferences', () => {
  it('lists FROM images, not stages, scratch or flags', () => {
    expect(refs('FROM --platform=linux/amd64 node:20 AS build\nRUN x\nFROM build\nFROM scratch\nFROM 0\n')).toEqual(['node:20']);
  });

  it('expands ARG defaults declared before the first FROM, in every form the builder knows', () => {
    const text = [
      'ARG REG=127.0.0.1:8600',
      'ARG NAME="victim.3" TAG',
      'ARG FULL=${REG}/$NAME',
      'FROM $FULL:${TAG:-latest}',
      'FROM ${UNSET:-debian}:${REG:+bookworm}',
      '',
    ].join('\n');
    expect(refs(text)).toEqual(['127.0.0.1:8600/victim.3:latest', 'debian:bookworm']);
  });

  it('follows line continuations, comments inside them, lower-case keywords and the escape directive', () => {
    expect(refs('from \\\n  # a comment\n  127.0.0.1:1/x:y\n')).toEqual(['127.0.0.1:1/x:y']);
    expect(refs('# escape=`\nFROM `\n  other:1\n')).toEqual(['other:1']);
  });

  it('lists COPY --from images (as written and expanded), not stages or stage numbers', () => {
    const text = 'FROM node:20 AS deps\nFROM node:20\nARG SRC=abc123\nCOPY --from=deps /a /b\nCOPY --from=0 /a /b\nCOPY --from="$SRC" /a /b\nCOPY --from=7 /a /b\n';
    expect(refs(text)).toEqual(['node:20', 'node:20', '$SRC', 'abc123', '7']);
  });

  it('expands unset names to nothing and leaves other text alone', () => {
    expect(expandArgs('a$B${C}d', new Map())).toBe('ad');
    expect(expandArgs('${A:+x}${A:-y}', new Map([['A', '1']]))).toBe('x1');
  });
});
