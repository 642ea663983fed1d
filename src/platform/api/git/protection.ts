/**
 * What keeps an app's history safe in its bare repository, enforced by git itself so that it holds
 * for every push whatever the API is doing:
 *
 * - every deployment has a ref `refs/divio/deployments/ID` at its commit, so a force-push, a deleted
 *   branch and `git gc` never take away what a rollback needs; `transfer.hideRefs` keeps the
 *   namespace out of every advertisement, and git refuses a client's push to a hidden ref;
 * - an `update` hook refuses a non-fast-forward push or a deletion of a branch an environment deploys
 *   from, unless that environment allows force pushes. The hook reads a list the API writes into
 *   the repository (PROTECTION_LIST_FILE), so it needs neither the API nor its database.
 *
 * The list has one line per environment that protects its branch: `BRANCH ENVIRONMENT`. Branch names
 * never contain whitespace (git and the branch schema forbid it), so the line splits unambiguously.
 */
import { ENVIRONMENT_NAMES, type EnvironmentName } from '../../../shared/api/schemas.js';
import { branchName } from '../../../shared/api/schemas.js';

export const DEPLOYMENT_REF_PREFIX = 'refs/divio/deployments/';
/** Hidden from clients: they can neither see nor push, nor delete, anything below it. */
export const HIDDEN_REF_NAMESPACE = 'refs/divio/';
export const PROTECTION_LIST_FILE = 'divio-protected-branches';
export const UPDATE_HOOK_FILE = 'update';

export interface BranchProtection {
  branch: string;
  environment: EnvironmentName;
}

export interface EnvironmentBranch {
  name: EnvironmentName;
  branch: string;
  allow_force_push: boolean;
}

/** The branches git must keep from being rewritten: each environment's, unless it allows force pushes. */
export function branchProtections(environments: readonly EnvironmentBranch[]): BranchProtection[] {
  return environments
    .filter((env) => !env.allow_force_push)
    .map((env) => ({ branch: env.branch, environment: env.name }))
    .sort((a, b) => (a.branch === b.branch ? a.environment.localeCompare(b.environment) : a.branch < b.branch ? -1 : 1));
}

/**
 * The list file's text. Anything that could confuse the hook's line splitting (whitespace, a name git
 * would not accept) is refused here, so a bad row fails loudly in the API instead of silently in git.
 */
export function renderProtectionList(protections: readonly BranchProtection[]): string {
  const lines = protections.map(({ branch, environment }) => {
    if (!branchName.safeParse(branch).success) throw new Error(`"${branch}" is not a branch name the platform protects`);
    if (!(ENVIRONMENT_NAMES as readonly string[]).includes(environment)) throw new Error(`"${environment}" is not an environment`);
    return `${branch} ${environment}\n`;
  });
  return [...new Set(lines)].join('');
}

export function deploymentRef(deploymentId: string): string {
  // Ids are bigints rendered as text; anything else would be a path trick in the ref name.
  if (!/^[1-9][0-9]{0,18}$/.test(deploymentId)) throw new Error(`"${deploymentId}" is not a deployment id`);
  return `${DEPLOYMENT_REF_PREFIX}${deploymentId}`;
}

/**
 * git runs it as `update REF OLD NEW` once per pushed ref, from the repository's directory; a
 * non-zero exit refuses that ref alone (others in the same push go through, as with git's own
 * receive.denyNonFastForwards). The client's values arrive only as quoted positional parameters and
 * are checked before use; the ref name is printed with printf %s, never interpreted.
 */
export const UPDATE_HOOK = `#!/bin/sh
# Installed by the divio platform API, which rewrites it whenever it serves this repository: edits
# are lost. Refuses rewriting or deleting a branch an environment deploys from, unless that
# environment allows force pushes (divio project configure ENV --allow-force-push); the branches
# are listed in ${PROTECTION_LIST_FILE}, one "BRANCH ENVIRONMENT" a line.
set -f
ref="$1"
old="$2"
new="$3"
what=""
say() { printf 'divio: %s\\n' "$1" >&2; }

case "$ref" in
  ${HIDDEN_REF_NAMESPACE}*)
    say "$ref belongs to the platform (it keeps deployed commits); it cannot be pushed or deleted."
    exit 1 ;;
  refs/heads/*) ;;
  *) exit 0 ;;
esac
for sha in "$old" "$new"; do
  case "$sha" in
    '' | *[!0-9a-f]*) say "unexpected object name for $ref; the push is refused."; exit 1 ;;
  esac
done

list="\${GIT_DIR:-.}/${PROTECTION_LIST_FILE}"
if [ ! -r "$list" ]; then
  say "this repository's list of protected branches is missing, so nothing can be pushed to a branch."
  say "Try again in a moment; if it persists, ask the platform's operator to look at the API's log."
  exit 1
fi

branch="\${ref#refs/heads/}"
environments=""
while read -r listed environment; do
  if [ "$listed" = "$branch" ]; then environments="$environments $environment"; fi
done < "$list"
[ -n "$environments" ] || exit 0

case "$new" in
  *[!0]*) ;;
  *) what="delete the branch $branch" ;;
esac
if [ -z "$what" ]; then
  case "$old" in
    *[!0]*) ;;
    *) exit 0 ;;
  esac
  if git merge-base --is-ancestor "$old" "$new" 2>/dev/null; then exit 0; fi
  what="rewrite the branch $branch (this push is not a fast-forward: it would drop commits from it)"
fi

say "refusing to $what."
for environment in $environments; do
  say "the environment $environment deploys from $branch and does not allow force pushes;"
  say "  to allow them: divio project configure $environment --allow-force-push"
done
case "$new" in
  *[!0]*) say "Or pull and merge (or rebase) instead, and push again." ;;
esac
exit 1
`;
