// Where the Hugging Face hub is, who we are to it, and how repos and revisions become URLs and
// cache folder names. The environment variables are huggingface_hub's, so a mirror or token set
// up for other hub clients works here unchanged.
import { homedir } from 'node:os';
import { join } from 'node:path';

import { HovleError } from '../errors.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_REVISION = 'main';

type Env = Record<string, string | undefined>;

// An empty variable (`HF_TOKEN= hovle pull ...`) means "unset", as it does for the Python client.
function envValue(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

/** HF_ENDPOINT without its trailing slash, or https://huggingface.co. */
export function hubEndpoint(env: Env = process.env): string {
  const raw = envValue(env, 'HF_ENDPOINT') ?? DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new HovleError('INVALID_ARGUMENT', `HF_ENDPOINT '${raw}' is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new HovleError('INVALID_ARGUMENT', `HF_ENDPOINT '${raw}' must be an http or https URL`);
  }
  return raw.replace(/\/+$/, '');
}

/** HF_TOKEN, or HUGGING_FACE_HUB_TOKEN (its older name, still honoured by huggingface_hub). */
export function hubToken(env: Env = process.env): string | undefined {
  return envValue(env, 'HF_TOKEN') ?? envValue(env, 'HUGGING_FACE_HUB_TOKEN');
}

/** HOVLE_CACHE, else $XDG_CACHE_HOME/hovle, else ~/.cache/hovle. */
export function hovleCacheDir(env: Env = process.env): string {
  const own = envValue(env, 'HOVLE_CACHE');
  if (own) return own;
  const xdg = envValue(env, 'XDG_CACHE_HOME');
  return join(xdg ?? join(homedir(), '.cache'), 'hovle');
}

export interface RepoId {
  owner: string;
  name: string;
  /** `owner/name`. */
  id: string;
}

// The hub's own rule (huggingface_hub validate_repo_id), with the owner made mandatory: a bare
// name would resolve to a legacy canonical model, never a HoVLE checkpoint.
const PART = /^[A-Za-z0-9_.-]+$/;

/** Validates `owner/name`; INVALID_ARGUMENT with the reason otherwise. */
export function parseRepoId(id: string): RepoId {
  const bad = (why: string) => new HovleError('INVALID_ARGUMENT', `'${id}' is not a Hugging Face repo id (owner/name): ${why}`);
  const parts = id.split('/');
  if (parts.length !== 2) throw bad('expected exactly one /');
  const [owner, name] = parts as [string, string];
  for (const p of parts) {
    if (!PART.test(p)) throw bad('only letters, digits, -, _ and . are allowed');
    if (/^[-.]|[-.]$/.test(p)) throw bad('a part cannot start or end with - or .');
    if (p.includes('--') || p.includes('..')) throw bad("'--' and '..' are not allowed");
  }
  if (name.length > 96) throw bad('the name is longer than 96 characters');
  if (name.endsWith('.git')) throw bad('the name cannot end with .git');
  return { owner, name, id };
}

/** A branch, tag or commit; refs/pr/N style names are allowed. */
export function checkRevision(revision: string): string {
  const ok =
    revision.length > 0 &&
    revision.length <= 255 &&
    /^[A-Za-z0-9_.\-/]+$/.test(revision) &&
    !revision.split('/').some((seg) => seg === '' || seg === '.' || seg === '..');
  if (!ok) throw new HovleError('INVALID_ARGUMENT', `'${revision}' is not a valid revision (a branch, tag or commit)`);
  return revision;
}

// Revisions go into one path segment, slashes included, as huggingface_hub quotes them.
const rev = (revision: string) => encodeURIComponent(revision);

/** The tree API: every file of the revision with its size and LFS sha256. */
export function treeUrl(endpoint: string, repo: RepoId, revision: string): string {
  return `${endpoint}/api/models/${repo.id}/tree/${rev(revision)}?recursive=true`;
}

/** A file's download URL; the hub answers LFS files with a redirect to its CDN. */
export function resolveUrl(endpoint: string, repo: RepoId, revision: string, path: string): string {
  return `${endpoint}/${repo.id}/resolve/${rev(revision)}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

/**
 * One folder name per repo: `owner--name`. Unambiguous because repo ids cannot contain '--',
 * and it matches what huggingface_hub's own cache uses (models--owner--name).
 */
export function repoFolder(repo: RepoId): string {
  return `${repo.owner}--${repo.name}`;
}

/** One folder name per revision: refs/pr/1 becomes refs%2Fpr%2F1. */
export function revisionFolder(revision: string): string {
  return rev(revision);
}
