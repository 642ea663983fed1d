/**
 * What a sync will do, decided from the two trees alone (pure: no I/O). A comparison that needs
 * local digests the manifest does not have is returned in `needDigests`; the caller hashes those
 * files and plans again.
 */
import { etagMatches, etagRequirement } from './digests.js';
import { compareKeys, type KeyFold, type RefusedKey } from './keys.js';
import type { LocalFile, LocalTree } from './local-tree.js';
import type { RemoteObject, RemoteTree } from './remote-tree.js';

export type Direction = 'push' | 'pull';

export interface Transfer {
  key: string;
  /** Size of the source. */
  size: number;
  reason: 'new' | 'changed';
  local?: LocalFile;
  remote?: RemoteObject;
}

/** Keys that would name the same local path; none of them is transferred. */
export interface Collision {
  path: string;
  keys: string[];
  reason: string;
}

export interface DigestNeed {
  key: string;
  md5: boolean;
  partSizes: number[];
}

export interface Plan {
  direction: Direction;
  /** Largest first, so that small files fill in around the big ones. */
  transfers: Transfer[];
  /** Keys whose content is the same on both sides. */
  inSync: string[];
  /** Keys only on the target: deleted with `delete`, kept otherwise. */
  targetOnly: string[];
  refused: RefusedKey[];
  collisions: Collision[];
  needDigests: DigestNeed[];
}

export interface PlanInput {
  direction: Direction;
  local: LocalTree;
  remote: RemoteTree;
  /** The part size this engine uploads with (to recognise its own multipart ETags). */
  partSize: number;
  /** Pull onto a case-insensitive or normalising filesystem: how it folds names. */
  fold?: KeyFold;
}

export function planSync(input: PlanInput): Plan {
  const plan: Plan = { direction: input.direction, transfers: [], inSync: [], targetOnly: [], refused: [], collisions: [], needDigests: [] };
  if (input.direction === 'push') planPush(input, plan);
  else planPull(input, plan);
  plan.transfers.sort((a, b) => b.size - a.size || compareKeys(a.key, b.key));
  plan.inSync.sort(compareKeys);
  plan.targetOnly.sort(compareKeys);
  plan.refused.sort((a, b) => compareKeys(a.key, b.key));
  return plan;
}

function planPush({ local, remote, partSize }: PlanInput, plan: Plan): void {
  plan.refused.push(...local.invalid);
  for (const [key, kind] of local.obstacles) {
    plan.refused.push({ key, reason: kind === 'a symbolic link' ? 'symbolic link (never followed)' : `${kind} (not a regular file)` });
  }
  for (const file of local.files.values()) compare(plan, file, remote.objects.get(file.key), 'push', partSize);
  const untouchable = new Set([...local.invalid.map((refused) => refused.key), ...local.obstacles.keys()]);
  for (const key of remote.objects.keys()) {
    if (!local.files.has(key) && !untouchable.has(key)) plan.targetOnly.push(key);
  }
}

function planPull({ local, remote, partSize, fold }: PlanInput, plan: Plan): void {
  plan.refused.push(...remote.refused);
  const fold_ = fold ?? ((key: string) => key);
  const blocked = fileDirectoryCollisions(remote, fold_, plan);
  for (const key of foldCollisions(remote, local, fold, plan)) blocked.add(key);

  for (const object of remote.objects.values()) {
    if (blocked.has(object.key)) continue;
    const obstacle = localObstacle(object.key, local);
    if (obstacle) {
      plan.refused.push({ key: object.key, reason: obstacle });
      continue;
    }
    compare(plan, local.files.get(object.key), object, 'pull', partSize);
  }

  const remoteFolded = new Set([...remote.objects.keys(), ...remote.refused.map((refused) => refused.key)].map(fold_));
  for (const key of local.files.keys()) {
    if (!remoteFolded.has(fold_(key))) plan.targetOnly.push(key);
  }
}

function compare(plan: Plan, local: LocalFile | undefined, remote: RemoteObject | undefined, direction: Direction, partSize: number): void {
  const source = direction === 'push' ? local : remote;
  if (!source) return;
  const key = source.key;
  if (!local || !remote) {
    plan.transfers.push({ key, size: source.size, reason: 'new', local, remote });
    return;
  }
  if (local.size !== remote.size || local.unreadable) {
    plan.transfers.push({ key, size: source.size, reason: 'changed', local, remote });
    return;
  }
  const requirement = etagRequirement(remote.etag, remote.size, partSize);
  const matches = etagMatches(local.digests, remote.etag, requirement);
  if (matches === true) plan.inSync.push(key);
  else if (matches === false) plan.transfers.push({ key, size: source.size, reason: 'changed', local, remote });
  else {
    plan.needDigests.push({
      key,
      md5: requirement.kind === 'md5',
      partSizes: requirement.kind === 'composite' ? [requirement.partSize] : [],
    });
  }
}

/**
 * A key that is also a "directory" of other keys (`a` and `a/b`) cannot be both a file and a
 * directory locally: the file key is not pulled, the keys under it are.
 */
function fileDirectoryCollisions(remote: RemoteTree, fold: KeyFold, plan: Plan): Set<string> {
  const directories = new Map<string, string[]>();
  for (const key of remote.objects.keys()) {
    const folded = fold(key);
    for (let slash = folded.indexOf('/'); slash !== -1; slash = folded.indexOf('/', slash + 1)) {
      const directory = folded.slice(0, slash);
      const members = directories.get(directory);
      if (!members) directories.set(directory, [key]);
      else if (members.length < 3) members.push(key);
    }
  }
  const blocked = new Set<string>();
  for (const key of remote.objects.keys()) {
    const under = directories.get(fold(key));
    if (!under) continue;
    blocked.add(key);
    plan.collisions.push({ path: key, keys: [key, ...under], reason: 'a file and a directory of the same name' });
  }
  return blocked;
}

/** On a folding filesystem, keys (or a key and a local file) that differ only in case or normalisation. */
function foldCollisions(remote: RemoteTree, local: LocalTree, fold: KeyFold | undefined, plan: Plan): Set<string> {
  const blocked = new Set<string>();
  if (!fold) return blocked;
  const groups = new Map<string, string[]>();
  for (const key of remote.objects.keys()) {
    const folded = fold(key);
    groups.set(folded, [...(groups.get(folded) ?? []), key]);
  }
  const localByFold = new Map([...local.files.keys()].map((key) => [fold(key), key]));
  for (const [folded, keys] of groups) {
    const localKey = localByFold.get(folded);
    const names = localKey !== undefined && !keys.includes(localKey) ? [...keys, localKey] : keys;
    if (names.length < 2) continue;
    for (const key of keys) blocked.add(key);
    plan.collisions.push({
      path: localKey ?? keys[0] ?? folded,
      keys: names.sort(compareKeys),
      reason: 'names that differ only in case or Unicode normalisation are one file on this filesystem',
    });
  }
  return blocked;
}

/** Why a pulled key cannot be written where it belongs without following or replacing something. */
function localObstacle(key: string, local: LocalTree): string | undefined {
  for (let slash = key.indexOf('/'); slash !== -1; slash = key.indexOf('/', slash + 1)) {
    const parent = key.slice(0, slash);
    const kind = local.obstacles.get(parent);
    if (kind === 'a symbolic link') return `the local path goes through a symbolic link (${parent})`;
    if (kind) return `the local path goes through ${kind} (${parent})`;
    if (local.files.has(parent)) return `a local file is in the way (${parent})`;
  }
  const kind = local.obstacles.get(key);
  if (kind === 'a symbolic link') return 'the local path is a symbolic link (never written through)';
  if (kind) return `the local path is ${kind}`;
  if (local.directories.has(key)) return 'a local directory has this name';
  return undefined;
}
