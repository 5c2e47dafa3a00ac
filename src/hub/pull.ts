// `hovle pull`: a HoVLE checkpoint on the Hugging Face hub -> a converted GGUF in the cache.
//
// Cache layout (root: hovleCacheDir(), i.e. HOVLE_CACHE, $XDG_CACHE_HOME/hovle or ~/.cache/hovle):
//
//   hub/<owner>--<name>/<revision>/            the checkpoint files, named as on the hub
//       <file>.incomplete                     a download in progress; the next pull resumes it
//       .hovle-files.json                     oid and size of each verified file
//       .hovle-keep                           present once a pull ran with --keep-checkpoint
//   models/<owner>--<name>/<revision>/<name>-<type>.gguf              the converted model
//   models/<owner>--<name>/<revision>/<name>-<type>.gguf.source.json  the hub files it came from
//
// <revision> is the one asked for (main, a tag, a commit), URL-encoded (refs/pr/1 -> refs%2Fpr%2F1).
// A branch moves, so nothing is trusted by folder name alone: a file or model counts as cached
// only while the oids recorded next to it equal those the hub lists now.
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';

import { convertCheckpoint } from '../convert/convert.js';
import { readHfConfig } from '../convert/hf-config.js';
import { FILE_TYPES, type FileType } from '../convert/type-policy.js';
import { HovleError } from '../errors.js';
import { downloadFile, hubGet, statusError, withRetries, type HubHttpOptions, type RetryOptions } from './download.js';
import {
  checkRevision,
  DEFAULT_REVISION,
  hovleCacheDir,
  hubEndpoint,
  hubToken,
  parseRepoId,
  repoFolder,
  resolveUrl,
  revisionFolder,
  treeUrl,
  type RepoId,
} from './endpoint.js';

export const DEFAULT_PULL_TYPE: FileType = 'q4_k_m';

/** What convertCheckpoint reads besides the weights; the first three are required. */
const REQUIRED_FILES = ['config.json', 'tokenizer.model', 'tokenizer_config.json'];
const OPTIONAL_FILES = ['generation_config.json', 'special_tokens_map.json', 'added_tokens.json'];
const INDEX = 'model.safetensors.index.json';
const SINGLE = 'model.safetensors';

export interface PullOptions {
  /** Default q4_k_m. */
  type?: FileType;
  /** Branch, tag or commit (default main). */
  revision?: string;
  /** Write the GGUF here instead of the cache. It is always converted: hovle cannot tell what an arbitrary file came from. */
  output?: string;
  /** Keep the downloaded checkpoint after converting (default: delete it, unless an earlier pull kept it). */
  keepCheckpoint?: boolean;
  /** Default hovleCacheDir(). */
  cacheDir?: string;
  /** Default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default HF_TOKEN. */
  token?: string;
  /** Quantization threads (default: all cores). */
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (p: PullProgress) => void;
  /** Consecutive failed attempts per request retried before giving up (default 5). */
  retries?: number;
  /** First retry backoff (default 1 s, doubling). */
  retryDelayMs?: number;
  /** A connection silent this long counts as dropped (default 60 s). */
  idleTimeoutMs?: number;
}

/** Download progress covers the weights (the small files before them are not worth a bar). */
export type PullProgress =
  | { phase: 'download'; file: string; bytesDone: number; bytesTotal: number }
  | { phase: 'convert'; tensor: string; bytesDone: number; bytesTotal: number };

export interface PullResult {
  /** The GGUF file. */
  path: string;
  type: FileType;
  repo: string;
  revision: string;
  /** The commit the hub resolved the revision to, when it said. */
  commit?: string;
  /** GGUF size. */
  bytes: number;
  /** Size of the hub files the model is made from. */
  checkpointBytes: number;
  /** Bytes transferred by this pull (0 when everything was cached). */
  downloadedBytes: number;
  /** False when the cached model was already up to date. */
  converted: boolean;
  /** The checkpoint folder, when it is kept. */
  checkpointDir?: string;
}

interface HubFile {
  path: string;
  size: number;
  /** The LFS sha256, or the git blob id for files stored in git. */
  oid: string;
  /** Set for LFS files: what the downloaded bytes must hash to. */
  sha256?: string;
}

type FileRecord = Record<string, { oid: string; size: number }>;

interface ModelSource {
  repo: string;
  revision: string;
  commit?: string;
  type: FileType;
  bytes: number;
  files: FileRecord;
}

type Http = HubHttpOptions & RetryOptions;

// The tree of a big repo is paginated at ~1000 entries; 64 MiB of JSON is far beyond any real one.
const MAX_JSON = 64 * 1024 * 1024;

async function readJson(res: IncomingMessage, what: string): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > MAX_JSON) {
      res.destroy();
      throw new HovleError('DOWNLOAD_FAILED', `${what}: response over ${MAX_JSON} bytes`);
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HovleError('DOWNLOAD_FAILED', `${what}: the response is not JSON (is HF_ENDPOINT a Hugging Face hub?)`);
  }
}

function parseEntry(e: unknown, what: string): HubFile | undefined {
  const bad = () => new HovleError('DOWNLOAD_FAILED', `${what}: unexpected tree entry ${JSON.stringify(e)?.slice(0, 200)}`);
  if (typeof e !== 'object' || e === null) throw bad();
  const { type, path, size, oid, lfs } = e as Record<string, unknown>;
  if (type !== 'file') return undefined;
  if (typeof path !== 'string' || typeof oid !== 'string' || !Number.isSafeInteger(size) || (size as number) < 0) throw bad();
  if (lfs === undefined || lfs === null) return { path, size: size as number, oid };
  const l = lfs as Record<string, unknown>;
  if (typeof l.oid !== 'string' || !/^[0-9a-f]{64}$/i.test(l.oid)) throw bad();
  if (l.size !== undefined && l.size !== size) throw bad();
  return { path, size: size as number, oid: l.oid.toLowerCase(), sha256: l.oid.toLowerCase() };
}

// Link: <https://huggingface.co/api/models/x/y/tree/main?recursive=true&cursor=...>; rel="next"
function nextLink(header: string | undefined, base: URL): string | undefined {
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header ?? '');
  return m ? new URL(m[1]!, base).href : undefined;
}

async function listFiles(url: string, http: Http, what: string): Promise<{ files: HubFile[]; commit?: string }> {
  const files: HubFile[] = [];
  let commit: string | undefined;
  let next: string | undefined = url;
  for (let page = 0; next !== undefined; page++) {
    if (page >= 10_000) throw new HovleError('DOWNLOAD_FAILED', `${what}: the file list does not end`);
    const pageUrl: string = next;
    const r = await withRetries(what, http, async () => {
      const { res, status, url: at } = await hubGet(pageUrl, http);
      if (status !== 200) {
        res.resume();
        throw statusError(status, res.headers, what, Boolean(http.token));
      }
      const link = res.headers.link;
      return { body: await readJson(res, what), link: Array.isArray(link) ? link.join(', ') : link, commit: res.headers['x-repo-commit'], at };
    });
    if (!Array.isArray(r.body)) throw new HovleError('DOWNLOAD_FAILED', `${what}: expected a JSON array of files`);
    for (const e of r.body) {
      const f = parseEntry(e, what);
      if (f) files.push(f);
    }
    if (commit === undefined && typeof r.commit === 'string' && /^[0-9a-f]{40}$/.test(r.commit)) commit = r.commit;
    next = nextLink(r.link, r.at);
  }
  return commit !== undefined ? { files, commit } : { files };
}

async function readRecord<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined; // absent or torn: treated as nothing cached
  }
}

// Written whole under another name and renamed, so a crash never leaves a torn record behind.
async function writeRecord(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, JSON.stringify(value, null, 2) + '\n');
    await rename(tmp, path);
  } catch (err) {
    throw new HovleError('IO_ERROR', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

const sameFile = (rec: { oid: string; size: number } | undefined, f: HubFile) => rec !== undefined && rec.oid === f.oid && rec.size === f.size;

/** The shards the index names (or model.safetensors), each checked against the hub's list. */
async function weightFiles(dir: string, byPath: Map<string, HubFile>, what: string): Promise<HubFile[]> {
  if (!byPath.has(INDEX)) return [byPath.get(SINGLE)!];
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(await readFile(join(dir, INDEX), 'utf8')) as typeof index;
  } catch (err) {
    throw new HovleError('CHECKPOINT_INVALID', `${what}: cannot read ${INDEX}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof index.weight_map !== 'object' || index.weight_map === null) throw new HovleError('CHECKPOINT_INVALID', `${what}: ${INDEX} has no weight_map`);
  const shards = [...new Set(Object.values(index.weight_map as Record<string, unknown>))].sort();
  return shards.map((s) => {
    // The name becomes a path in the cache: nothing but a plain file name of this repo.
    if (typeof s !== 'string' || !s.endsWith('.safetensors') || /[/\\]/.test(s) || s.startsWith('.')) {
      throw new HovleError('CHECKPOINT_INVALID', `${what}: ${INDEX} names shard ${JSON.stringify(s)}, not a .safetensors file name`);
    }
    const f = byPath.get(s);
    if (!f) throw new HovleError('CHECKPOINT_INVALID', `${what}: ${INDEX} names shard ${s}, which the repo does not have`);
    return f;
  });
}

export async function pullModel(repoId: string, options: PullOptions = {}): Promise<PullResult> {
  const repo: RepoId = parseRepoId(repoId);
  const revision = checkRevision(options.revision ?? DEFAULT_REVISION);
  const type = options.type ?? DEFAULT_PULL_TYPE;
  if (!FILE_TYPES.includes(type)) throw new HovleError('INVALID_ARGUMENT', `type must be one of ${FILE_TYPES.join(', ')}, not '${String(type)}'`);
  const endpoint = options.endpoint?.replace(/\/+$/, '') ?? hubEndpoint();
  const token = options.token ?? hubToken();
  const cache = options.cacheDir ?? hovleCacheDir();
  const { signal } = options;
  const what = `${repo.id}@${revision}`;
  const http: Http = {
    tokenOrigin: new URL(endpoint).origin,
    ...(token !== undefined ? { token } : {}),
    ...(signal ? { signal } : {}),
    ...(options.retries !== undefined ? { retries: options.retries } : {}),
    ...(options.retryDelayMs !== undefined ? { retryDelayMs: options.retryDelayMs } : {}),
    ...(options.idleTimeoutMs !== undefined ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
  };

  const { files, commit } = await listFiles(treeUrl(endpoint, repo, revision), http, what);
  // Only top-level files: that is where convertCheckpoint looks (subfolders hold onnx/ and other variants).
  const byPath = new Map(files.filter((f) => !f.path.includes('/')).map((f) => [f.path, f]));
  const missing = REQUIRED_FILES.filter((p) => !byPath.has(p));
  if (missing.length > 0) {
    throw new HovleError('CHECKPOINT_INVALID', `${what} is not a HoVLE checkpoint in Hugging Face format: it has no ${missing.join(', ')}`);
  }
  if (!byPath.has(INDEX) && !byPath.has(SINGLE)) {
    const other = [...byPath.keys()].filter((p) => /\.(safetensors|bin|pt|pth|gguf)$/.test(p));
    throw new HovleError(
      'CHECKPOINT_INVALID',
      `${what} has no safetensors weights (${SINGLE} or ${INDEX})${other.length > 0 ? `, only ${other.slice(0, 5).join(', ')}` : ''}; hovle converts safetensors checkpoints`,
    );
  }
  const small = [...REQUIRED_FILES, ...OPTIONAL_FILES, INDEX].flatMap((p) => byPath.get(p) ?? []);

  const modelDir = join(cache, 'models', repoFolder(repo), revisionFolder(revision));
  const outPath = options.output ?? join(modelDir, `${repo.name}-${type}.gguf`);
  const sourcePath = options.output === undefined ? `${outPath}.source.json` : undefined;
  const base = { type, repo: repo.id, revision, ...(commit !== undefined ? { commit } : {}) };

  if (sourcePath) {
    const src = await readRecord<ModelSource>(sourcePath);
    const recorded: FileRecord = src?.files ?? {};
    // The weights follow from the index, whose oid is recorded; a file the hub added since also counts as a change.
    const fresh =
      src !== undefined &&
      src.type === type &&
      (await fileSize(outPath)) === src.bytes &&
      Object.entries(recorded).every(([p, rec]) => byPath.has(p) && sameFile(rec, byPath.get(p)!)) &&
      small.every((f) => sameFile(recorded[f.path], f));
    if (fresh) {
      const checkpointBytes = Object.values(recorded).reduce((a, r) => a + r.size, 0);
      return { path: outPath, ...base, bytes: src.bytes, checkpointBytes, downloadedBytes: 0, converted: false };
    }
  }

  const snapshot = join(cache, 'hub', repoFolder(repo), revisionFolder(revision));
  const manifestPath = join(snapshot, '.hovle-files.json');
  const keepMarker = join(snapshot, '.hovle-keep');
  await mkdir(snapshot, { recursive: true }).catch((err: Error) => {
    throw new HovleError('IO_ERROR', `cannot create ${snapshot}: ${err.message}`, { cause: err });
  });
  const manifest: FileRecord = (await readRecord<FileRecord>(manifestPath)) ?? {};
  // Downloading from the commit, when known, keeps every file of one snapshot even if the branch moves meanwhile.
  const fetchRevision = commit ?? revision;
  let downloadedBytes = 0;

  const fetchFiles = async (list: HubFile[], report: boolean) => {
    const todo: HubFile[] = [];
    for (const f of list) {
      if (!sameFile(manifest[f.path], f) || (await fileSize(join(snapshot, f.path))) !== f.size) todo.push(f);
    }
    const total = todo.reduce((a, f) => a + f.size, 0);
    let before = 0;
    for (const f of todo) {
      const r = await downloadFile(resolveUrl(endpoint, repo, fetchRevision, f.path), join(snapshot, f.path), {
        ...http,
        size: f.size,
        ...(f.sha256 !== undefined ? { sha256: f.sha256 } : {}),
        ...(report && options.onProgress
          ? { onProgress: (done: number) => options.onProgress!({ phase: 'download', file: f.path, bytesDone: before + done, bytesTotal: total }) }
          : {}),
      });
      before += f.size;
      downloadedBytes += r.downloadedBytes;
      manifest[f.path] = { oid: f.oid, size: f.size };
      await writeRecord(manifestPath, manifest);
    }
  };

  await fetchFiles(small, false);
  // Before gigabytes of weights: does the config describe a model hovle can convert?
  await readHfConfig(snapshot);
  const weights = await weightFiles(snapshot, byPath, what);
  await fetchFiles(weights, true);

  await mkdir(dirname(outPath), { recursive: true }).catch((err: Error) => {
    throw new HovleError('IO_ERROR', `cannot create ${dirname(outPath)}: ${err.message}`, { cause: err });
  });
  const r = await convertCheckpoint(snapshot, outPath, {
    type,
    name: repo.name,
    ...(signal ? { signal } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.onProgress
      ? { onProgress: (p) => options.onProgress!({ phase: 'convert', tensor: p.tensor, bytesDone: p.bytesWritten, bytesTotal: p.bytesTotal }) }
      : {}),
  });
  const used = [...small, ...weights];
  const record: FileRecord = Object.fromEntries(used.map((f) => [f.path, { oid: f.oid, size: f.size }]));
  if (sourcePath) {
    await writeRecord(sourcePath, { repo: repo.id, revision, ...(commit !== undefined ? { commit } : {}), type, bytes: r.bytes, files: record } satisfies ModelSource);
  }

  // An earlier --keep-checkpoint is remembered: a later plain pull of another type must not delete what was kept on purpose.
  const keep = options.keepCheckpoint === true || (await fileSize(keepMarker)) !== undefined;
  if (options.keepCheckpoint) await writeFile(keepMarker, '').catch(() => undefined);
  if (!keep) await rm(snapshot, { recursive: true, force: true });
  return {
    path: r.path,
    ...base,
    bytes: r.bytes,
    checkpointBytes: used.reduce((a, f) => a + f.size, 0),
    downloadedBytes,
    converted: true,
    ...(keep ? { checkpointDir: snapshot } : {}),
  };
}
