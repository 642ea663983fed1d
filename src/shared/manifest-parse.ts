/**
 * Parsing divio.yaml text into a Manifest, with errors a person can act on: the file, the line, the
 * field, what was found and what is allowed. Pure (no file system) so the platform can parse a
 * manifest read from a git tree the same way the CLI does.
 */
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document } from 'yaml';
import type { core as zcore } from 'zod';
import { manifestSchema, type Manifest } from './manifest.js';

export interface ManifestProblem {
  /** Dotted field path, e.g. "web.port"; "" for the whole document. */
  field: string;
  line?: number;
  found: string;
  allowed: string;
}

export class ManifestError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ManifestProblem[],
  ) {
    super(formatProblems(file, problems));
    this.name = 'ManifestError';
  }
}

function formatProblems(file: string, problems: ManifestProblem[]): string {
  const lines = problems.map((p) => {
    const where = p.line ? `${file}:${p.line}` : file;
    const field = p.field === '' ? '' : ` ${p.field}:`;
    return `${where}:${field} found ${p.found}; allowed: ${p.allowed}`;
  });
  return `${file} is not valid:\n  ${lines.join('\n  ')}`;
}

export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  if (value === null) return 'null';
  if (typeof value === 'string') return `"${value.length > 60 ? value.slice(0, 57) + '...' : value}" (text)`;
  if (typeof value === 'number') return `${value} (number)`;
  if (typeof value === 'boolean') return `${value} (true/false)`;
  if (Array.isArray(value)) return 'a list';
  return 'a mapping';
}

function valueAt(root: unknown, path: PropertyKey[]): unknown {
  let cur: unknown = root;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key];
  }
  return cur;
}

function lineAt(doc: Document, counter: LineCounter, path: PropertyKey[]): number | undefined {
  // A problem with a mapping's key (a process name) points at the key itself.
  const parent = path.length > 0 ? doc.getIn(path.slice(0, -1) as unknown[], true) : undefined;
  if (isMap(parent)) {
    const pair = parent.items.find((item) => isScalar(item.key) && String(item.key.value) === String(path.at(-1)));
    if (pair && isNode(pair.key) && pair.key.range) return counter.linePos(pair.key.range[0]).line;
  }
  // Point at the deepest node that exists, so a missing field points at its parent mapping.
  for (let depth = path.length; depth >= 0; depth--) {
    const node = doc.getIn(path.slice(0, depth) as unknown[], true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
  }
  return undefined;
}

function expectedOf(issue: zcore.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.expected === 'int') return 'a whole number';
      if (issue.expected === 'array') return 'a list';
      return `a ${issue.expected === 'object' || issue.expected === 'record' ? 'mapping' : issue.expected}`;
    case 'too_small':
      return issue.origin === 'string' ? 'a non-empty text' : `a number of at least ${String(issue.minimum)}`;
    case 'too_big':
      return `a number of at most ${String(issue.maximum)}`;
    case 'invalid_value':
      return issue.values.map((v) => JSON.stringify(v)).join(', ');
    case 'invalid_union':
      return issue.message;
    case 'invalid_format':
      return issue.message;
    default:
      return issue.message;
  }
}

export function parseManifest(text: string, file = 'divio.yaml'): Manifest {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ManifestError(
      file,
      doc.errors.map((e) => ({
        field: '',
        line: e.linePos?.[0]?.line,
        found: `invalid YAML (${e.message.split('\n')[0]})`,
        allowed: 'a YAML mapping',
      })),
    );
  }
  const data: unknown = doc.toJS() ?? {};
  const result = manifestSchema.safeParse(data);
  if (result.success) return result.data;

  const problems: ManifestProblem[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const path = [...issue.path, key];
        problems.push({
          field: path.join('.'),
          line: lineAt(doc, counter, path),
          found: 'an unknown key',
          allowed: knownKeys(issue.path),
        });
      }
      continue;
    }
    const found = issue.code === 'custom' ? (issue.params as { found?: unknown } | undefined)?.found : undefined;
    problems.push({
      field: issue.path.join('.'),
      line: lineAt(doc, counter, issue.path),
      found: typeof found === 'string' ? found : describeValue(valueAt(data, issue.path)),
      allowed: expectedOf(issue),
    });
  }
  throw new ManifestError(file, problems);
}

function knownKeys(path: PropertyKey[]): string {
  let schema: unknown = manifestSchema;
  for (const key of path) {
    const shape = shapeOf(schema);
    // A mapping of named entries (processes) or a list (cron) has one schema for every entry.
    const def = (unwrapped(schema) as { def?: { valueType?: unknown; element?: unknown } } | undefined)?.def;
    schema = shape ? shape[String(key)] : (def?.valueType ?? def?.element);
  }
  const shape = shapeOf(schema);
  return shape ? Object.keys(shape).join(', ') : 'no other keys';
}

function shapeOf(schema: unknown): Record<string, unknown> | undefined {
  // Unwrap optional/default wrappers to reach the object's shape.
  let cur = schema as { shape?: Record<string, unknown>; unwrap?: () => unknown; def?: { innerType?: unknown } } | undefined;
  for (let i = 0; i < 5 && cur; i++) {
    if (cur.shape) return cur.shape;
    const inner = cur.def?.innerType;
    cur = inner as typeof cur;
  }
  return undefined;
}

function unwrapped(schema: unknown): unknown {
  let cur = schema as { def?: { innerType?: unknown } } | undefined;
  for (let i = 0; i < 5 && cur?.def?.innerType; i++) cur = cur.def.innerType as typeof cur;
  return cur;
}
