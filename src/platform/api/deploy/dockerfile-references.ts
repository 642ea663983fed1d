/**
 * Which images a Dockerfile builds from, and whether this app may use them. The engine's classic
 * builder resolves `FROM` and `COPY --from=` against its local image store first, and that store
 * holds every app's images (built here, or pulled by Swarm): without this check one tenant's
 * Dockerfile could start `FROM` another's image, by registry name, local tag or image id, and copy
 * its files out. The rules:
 * - a name in this platform's registry must be this app instance's own repository;
 * - a local image built for another app (its `divio.app-id` label, set by the builder on every
 *   image it builds) is refused whatever name reached it;
 * - an image id (or id prefix) is refused unless it is one of this app's own images: ids also
 *   reach the untagged intermediate images of other apps' builds, which carry no label;
 * - an image whose ONBUILD triggers copy from another image is checked for those too.
 * ARG defaults declared before the first FROM are expanded first, as the builder does.
 */
import type Docker from 'dockerode';

export const LABEL_APP_ID = 'divio.app-id';
const LABEL_APP = 'divio.app';

export interface ImageReferenceUse {
  /** The instruction as written (for the error), e.g. `FROM $BASE`. */
  instruction: string;
  /** The reference after ARG expansion. */
  reference: string;
  line: number;
}

// ---- parsing -----------------------------------------------------------------------------------

interface Instruction {
  keyword: string;
  args: string;
  line: number;
  text: string;
}

/** Logical instructions: continuation lines joined, comments and blank lines dropped. */
export function dockerfileInstructions(text: string): Instruction[] {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let escape = '\\';
  // Parser directives: only at the very top, before any comment that is not one, or any instruction.
  for (const line of lines) {
    const directive = /^#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(line);
    if (!directive) break;
    if (directive[1]!.toLowerCase() === 'escape' && (directive[2] === '`' || directive[2] === '\\')) escape = directive[2];
  }
  const out: Instruction[] = [];
  let pending: { text: string; line: number } | undefined;
  lines.forEach((raw, index) => {
    const trimmed = raw.trim();
    if (pending === undefined && (trimmed === '' || trimmed.startsWith('#'))) return;
    if (pending !== undefined && (trimmed === '' || trimmed.startsWith('#'))) return;
    const continues = trimmed.endsWith(escape);
    const body = continues ? trimmed.slice(0, -1) : trimmed;
    if (pending === undefined) pending = { text: body, line: index + 1 };
    else pending.text += ` ${body}`;
    if (continues) return;
    const match = /^(\S+)\s*([\s\S]*)$/.exec(pending.text.trim());
    if (match) out.push({ keyword: match[1]!.toUpperCase(), args: match[2]!.trim(), line: pending.line, text: pending.text.trim() });
    pending = undefined;
  });
  if (pending) {
    const match = /^(\S+)\s*([\s\S]*)$/.exec(pending.text.trim());
    if (match) out.push({ keyword: match[1]!.toUpperCase(), args: match[2]!.trim(), line: pending.line, text: pending.text.trim() });
  }
  return out;
}

function unquote(value: string): string {
  if (value.length >= 2 && ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'")))) return value.slice(1, -1);
  return value;
}

/** `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}` as the builder's word expansion has them; unset is empty. */
export function expandArgs(value: string, args: ReadonlyMap<string, string>): string {
  return value.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced?: string, op?: string, word?: string, bare?: string) => {
    const name = (braced ?? bare)!;
    const current = args.get(name);
    if (op === '-') return current ? current : expandArgs(word ?? '', args);
    if (op === '+') return current ? expandArgs(word ?? '', args) : '';
    return current ?? '';
  });
}

/** `ARG a=1 b="two" c`: names with their defaults (undefined: declared without one). */
function argDeclarations(args: string): [string, string | undefined][] {
  const out: [string, string | undefined][] = [];
  for (const token of args.match(/(?:[^\s"']+|"[^"]*"|'[^']*')+/g) ?? []) {
    const eq = token.indexOf('=');
    if (eq < 0) out.push([token, undefined]);
    else out.push([token.slice(0, eq), unquote(token.slice(eq + 1))]);
  }
  return out;
}

/** Every image the Dockerfile names (FROM, COPY --from=) that is not one of its own stages. */
export function imageReferences(text: string): ImageReferenceUse[] {
  const globalArgs = new Map<string, string>();
  const stages: string[] = [];
  let stageArgs = new Map<string, string>();
  let seenFrom = false;
  const uses: ImageReferenceUse[] = [];
  const isStage = (name: string, stageCount: number) => {
    const lower = name.toLowerCase();
    if (stages.includes(lower)) return true;
    return /^\d+$/.test(name) && Number(name) < stageCount;
  };
  for (const instruction of dockerfileInstructions(text)) {
    if (instruction.keyword === 'ARG') {
      for (const [name, value] of argDeclarations(instruction.args)) {
        const target = seenFrom ? stageArgs : globalArgs;
        // A stage's ARG without a default takes the global one's.
        const resolved = value === undefined ? (seenFrom ? globalArgs.get(name) : undefined) : expandArgs(value, seenFrom ? new Map([...globalArgs, ...stageArgs]) : globalArgs);
        if (resolved !== undefined) target.set(name, resolved);
      }
      continue;
    }
    if (instruction.keyword === 'FROM') {
      const words = instruction.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const reference = expandArgs(words[0] ?? '', globalArgs);
      if (reference && reference.toLowerCase() !== 'scratch' && !isStage(reference, stages.length)) {
        uses.push({ instruction: instruction.text, reference, line: instruction.line });
      }
      const alias = words[1]?.toLowerCase() === 'as' ? words[2]?.toLowerCase() : undefined;
      stages.push(alias ?? `\u0000${stages.length}`);
      stageArgs = new Map();
      seenFrom = true;
      continue;
    }
    for (const from of copyFromValues(instruction)) {
      // Checked as written and expanded: engines differ in whether they expand the flag.
      for (const reference of new Set([from, expandArgs(from, new Map([...globalArgs, ...stageArgs]))])) {
        if (reference && !isStage(reference, stages.length)) uses.push({ instruction: instruction.text, reference, line: instruction.line });
      }
    }
  }
  return uses;
}

/** `--from=X` of a COPY (also inside ONBUILD), unquoted. */
function copyFromValues(instruction: { keyword: string; args: string }): string[] {
  let { keyword, args } = instruction;
  if (keyword === 'ONBUILD') {
    const inner = /^(\S+)\s*([\s\S]*)$/.exec(args);
    if (!inner) return [];
    keyword = inner[1]!.toUpperCase();
    args = inner[2]!;
  }
  if (keyword !== 'COPY' && keyword !== 'ADD') return [];
  const out: string[] = [];
  for (const match of args.matchAll(/--from=("[^"]*"|'[^']*'|\S+)/gi)) out.push(unquote(match[1]!));
  return out;
}

// ---- checking ----------------------------------------------------------------------------------

export interface ReferencePolicy {
  /** The registry as the engine names it, e.g. 127.0.0.1:8600. */
  registryAddress: string;
  /** This app instance's repository in it. */
  ownRepository: string;
  /** This app instance's id (the `divio.app-id` label of its images). */
  appId: string;
}

export class ForbiddenImageReference extends Error {
  constructor(
    readonly use: ImageReferenceUse,
    why: string,
  ) {
    super(`the Dockerfile may not build from "${use.reference}" (line ${use.line}: ${use.instruction}): ${why}`);
    this.name = 'ForbiddenImageReference';
  }
}

interface SplitReference {
  domain: string | undefined;
  repository: string;
}

/** `[DOMAIN/]PATH[:TAG][@DIGEST]`, as the engine reads a reference (a first part with "." or ":", or localhost, is a domain). */
function splitReference(reference: string): SplitReference {
  const withoutDigest = reference.split('@')[0]!;
  const slash = withoutDigest.indexOf('/');
  let domain: string | undefined;
  let rest = withoutDigest;
  if (slash > 0) {
    const first = withoutDigest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      domain = first;
      rest = withoutDigest.slice(slash + 1);
    }
  }
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  const repository = colon > lastSlash ? rest.slice(0, colon) : rest;
  return { domain, repository };
}

const LOOPBACK_HOSTS = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0)$/;

/** Whether DOMAIN names this platform's registry (the address itself, or another loopback name on its port). */
function isPlatformRegistry(domain: string | undefined, registryAddress: string): boolean {
  if (!domain) return false;
  const address = registryAddress.replace(/\/+$/, '').toLowerCase();
  const lower = domain.toLowerCase();
  if (lower === address) return true;
  const portOf = (value: string) => /:(\d+)$/.exec(value)?.[1];
  const hostOf = (value: string) => value.replace(/:\d+$/, '');
  return portOf(lower) !== undefined && portOf(lower) === portOf(address) && LOOPBACK_HOSTS.test(hostOf(lower)) && LOOPBACK_HOSTS.test(hostOf(address));
}

function looksLikeImageId(reference: string): boolean {
  return /^(sha256:)?[0-9a-f]{1,64}$/.test(reference);
}

type InspectedImage = Awaited<ReturnType<Docker.Image['inspect']>>;

async function inspectLocal(docker: Docker, reference: string): Promise<InspectedImage | undefined> {
  try {
    return await docker.getImage(reference).inspect();
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode;
    // 404: not in the local store; 400: not a valid reference (the build will say so itself).
    if (status === 404 || status === 400) return undefined;
    throw error;
  }
}

function checkName(use: ImageReferenceUse, name: string, policy: ReferencePolicy): void {
  const { domain, repository } = splitReference(name);
  if (isPlatformRegistry(domain, policy.registryAddress) && repository !== policy.ownRepository) {
    throw new ForbiddenImageReference(use, "it is another app's image in this platform's registry; an app builds only from public base images and its own images");
  }
}

/**
 * Refuses the first reference this app may not build from, with what it is and why. Resolves
 * references the way the engine will (its local image store), so what is checked is what would be used.
 */
export async function checkImageReferences(docker: Docker, dockerfile: string, policy: ReferencePolicy): Promise<void> {
  for (const use of imageReferences(dockerfile)) await checkReference(docker, use, policy, dockerfile, 0);
}

async function checkReference(docker: Docker, use: ImageReferenceUse, policy: ReferencePolicy, dockerfile: string, depth: number): Promise<void> {
  checkName(use, use.reference, policy);
  const image = await inspectLocal(docker, use.reference);
  // Not here: the engine would pull it, and it holds no credentials of this platform's registry.
  if (!image) return;
  const labels = image.Config?.Labels ?? {};
  const own = labels[LABEL_APP_ID] === policy.appId;
  if (!own && (labels[LABEL_APP_ID] !== undefined || labels[LABEL_APP] !== undefined)) {
    throw new ForbiddenImageReference(use, "it is another app's image on this engine; an app builds only from public base images and its own images");
  }
  for (const name of [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])]) checkName(use, name, policy);
  if (!own && looksLikeImageId(use.reference)) {
    throw new ForbiddenImageReference(use, 'it names an image by its id; name a base image by repository and tag (image ids also reach the intermediate images of other apps\' builds)');
  }
  if (!own && (image.RepoTags ?? []).length === 0 && (image.RepoDigests ?? []).length === 0) {
    throw new ForbiddenImageReference(use, 'it is an untagged image on this engine (an intermediate image of some build)');
  }
  // ONBUILD triggers of the base run in this build: a COPY --from in them is checked too.
  const triggers = image.Config?.OnBuild ?? [];
  if (depth < 3 && triggers.length > 0) {
    for (const trigger of triggers) {
      for (const from of copyFromValues({ keyword: 'ONBUILD', args: trigger })) {
        if (/^\d+$/.test(from) || namesStage(dockerfile, from)) continue;
        await checkReference(docker, { instruction: `ONBUILD ${trigger} (of ${use.reference})`, reference: from, line: use.line }, policy, dockerfile, depth + 1);
      }
    }
  }
}

function namesStage(dockerfile: string, name: string): boolean {
  return dockerfileInstructions(dockerfile).some((i) => {
    if (i.keyword !== 'FROM') return false;
    const words = i.args.split(/\s+/).filter((w) => !w.startsWith('--'));
    return words[1]?.toLowerCase() === 'as' && words[2]?.toLowerCase() === name.toLowerCase();
  });
}
