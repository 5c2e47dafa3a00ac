// A local stand-in for the Hugging Face hub, with the real URL layout: the tree API (LFS metadata
// computed from the files), resolve (LFS files redirected to a second server playing the CDN, as
// the hub does with signed URLs), Range requests, and faults injected on demand. Every request is
// logged so tests can assert what went over the wire.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface FakeHubOptions {
  /** repo id -> files (path -> content); paths may have folders. */
  repos: Record<string, Record<string, Buffer>>;
  /** Bearer token the hub requires (the CDN never does, and refuses one, as S3 does). */
  token?: string;
  /** Tree entries per page; a longer list is paginated with Link headers. */
  pageSize?: number;
  /** Paths whose first download is cut (socket closed) after this many bytes. */
  dropAfter?: Record<string, number>;
  /** Paths whose first download sends this many bytes and then hangs. */
  stallAfter?: Record<string, number>;
  /** Paths served with one byte flipped, every time. */
  corrupt?: string[];
  /** Paths whose first download answers this status (e.g. 503). */
  failOnce?: Record<string, number>;
  /** Answer Range requests with 200 and the whole file. */
  ignoreRange?: boolean;
}

export interface RequestLog {
  server: 'hub' | 'cdn';
  url: string;
  /** The repo file a resolve or CDN request was for. */
  file?: string;
  range?: string;
  authorization?: string;
  status: number;
  bytesSent: number;
}

export interface FakeHub {
  endpoint: string;
  cdn: string;
  /** The commit every repo's `main` resolves to. */
  commitOf(repo: string): string;
  requests: RequestLog[];
  close(): Promise<void>;
}

/** Every file under `dir`, by relative path. */
export function readFolder(dir: string, prefix = ''): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix + e.name;
    if (e.isDirectory()) Object.assign(out, readFolder(join(dir, e.name), `${rel}/`));
    else out[rel] = readFileSync(join(dir, e.name));
  }
  return out;
}

export const sha256 = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
// The hub's default .gitattributes sends these to LFS.
const isLfs = (path: string) => /\.(safetensors|bin|pt|model)$/.test(path);

interface TreeEntry {
  type: 'file' | 'directory';
  path: string;
  size: number;
  oid: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

function tree(files: Record<string, Buffer>): TreeEntry[] {
  const dirs = new Set<string>();
  const entries: TreeEntry[] = [];
  for (const [path, content] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    if (isLfs(path)) {
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(content)}\nsize ${content.length}\n`);
      entries.push({ type: 'file', path, size: content.length, oid: gitOid(pointer), lfs: { oid: sha256(content), size: content.length, pointerSize: pointer.length } });
    } else {
      entries.push({ type: 'file', path, size: content.length, oid: gitOid(content) });
    }
  }
  return [...[...dirs].map((path): TreeEntry => ({ type: 'directory', path, size: 0, oid: gitOid(Buffer.from(path)) })), ...entries];
}

export async function startFakeHub(options: FakeHubOptions): Promise<FakeHub> {
  const requests: RequestLog[] = [];
  const served = new Set<string>(); // files whose "first download" fault has fired
  const commitOf = (repo: string) => createHash('sha1').update(`commit ${repo}`).digest('hex');
  const byOid = new Map<string, { repo: string; path: string }>();
  for (const [repo, files] of Object.entries(options.repos)) {
    for (const [path, content] of Object.entries(files)) if (isLfs(path)) byOid.set(sha256(content), { repo, path });
  }
  let endpoint = '';
  let cdn = '';

  const fail = (res: http.ServerResponse, log: RequestLog, status: number, code?: string, message?: string) => {
    log.status = status;
    res.writeHead(status, { 'content-type': 'application/json', ...(code ? { 'x-error-code': code } : {}), ...(message ? { 'x-error-message': message } : {}) });
    res.end(JSON.stringify({ error: message ?? `HTTP ${status}` }));
  };

  function serveFile(req: http.IncomingMessage, res: http.ServerResponse, log: RequestLog, repo: string, path: string, content: Buffer) {
    log.file = path;
    const first = !served.has(path);
    served.add(path);
    if (first && options.failOnce?.[path] !== undefined) return fail(res, log, options.failOnce[path]!);
    let body = content;
    if (options.corrupt?.includes(path)) {
      body = Buffer.from(content);
      body[body.length >> 1]! ^= 0xff;
    }
    let status = 200;
    let start = 0;
    const headers: http.OutgoingHttpHeaders = { 'accept-ranges': 'bytes', 'x-repo-commit': commitOf(repo), etag: `"${sha256(content)}"` };
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && !options.ignoreRange) {
      start = Number(m[1]);
      if (start >= body.length) {
        log.status = 416;
        res.writeHead(416, { ...headers, 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    }
    const slice = body.subarray(start);
    log.status = status;
    res.writeHead(status, { ...headers, 'content-length': slice.length, 'content-type': 'application/octet-stream' });
    const cut = first ? options.dropAfter?.[path] : undefined;
    const stall = first ? options.stallAfter?.[path] : undefined;
    if (cut !== undefined) {
      log.bytesSent = Math.min(cut, slice.length);
      // A FIN after the bytes rather than a reset, so the client sees all of them before the close.
      res.write(slice.subarray(0, cut), () => res.socket?.end());
    } else if (stall !== undefined) {
      log.bytesSent = Math.min(stall, slice.length);
      res.write(slice.subarray(0, stall));
    } else {
      log.bytesSent = slice.length;
      res.end(slice);
    }
  }

  function hub(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', endpoint);
    const log: RequestLog = { server: 'hub', url: url.pathname + url.search, status: 0, bytesSent: 0 };
    if (req.headers.range) log.range = req.headers.range;
    if (req.headers.authorization) log.authorization = req.headers.authorization;
    requests.push(log);
    if (options.token && req.headers.authorization !== `Bearer ${options.token}`) return fail(res, log, 401, undefined, 'Invalid username or password.');

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const m = api ?? resolve;
    if (!m) return fail(res, log, 404);
    const repo = m[1]!;
    const files = options.repos[repo];
    if (!files) return fail(res, log, 404, 'RepoNotFound', 'Repository not found');
    const revision = decodeURIComponent(m[2]!);
    if (revision !== 'main' && revision !== commitOf(repo)) return fail(res, log, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`);

    if (api) {
      const entries = tree(files);
      const pageSize = options.pageSize ?? 1000;
      const cursor = Number(url.searchParams.get('cursor') ?? 0);
      const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json', 'x-repo-commit': commitOf(repo) };
      if (cursor + pageSize < entries.length) {
        headers.link = `<${endpoint}/api/models/${repo}/tree/${m[2]}?recursive=true&cursor=${cursor + pageSize}>; rel="next"`;
      }
      log.status = 200;
      res.writeHead(200, headers).end(JSON.stringify(entries.slice(cursor, cursor + pageSize)));
      return;
    }
    const path = resolve![3]!.split('/').map(decodeURIComponent).join('/');
    const content = files[path];
    if (!content) return fail(res, log, 404, 'EntryNotFound', `${path} does not exist on "${revision}"`);
    if (isLfs(path)) {
      log.file = path;
      log.status = 302;
      res.writeHead(302, { location: `${cdn}/repos/${sha256(content)}?response-content-disposition=attachment&Signature=fake`, 'x-repo-commit': commitOf(repo) }).end();
      return;
    }
    serveFile(req, res, log, repo, path, content);
  }

  function cdnHandler(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', cdn);
    const log: RequestLog = { server: 'cdn', url: url.pathname + url.search, status: 0, bytesSent: 0 };
    if (req.headers.range) log.range = req.headers.range;
    if (req.headers.authorization) log.authorization = req.headers.authorization;
    requests.push(log);
    if (req.headers.authorization) return fail(res, log, 400, undefined, 'Only one auth mechanism allowed');
    const target = byOid.get(url.pathname.replace(/^\/repos\//, ''));
    if (!target || url.searchParams.get('Signature') !== 'fake') return fail(res, log, 403);
    serveFile(req, res, log, target.repo, target.path, options.repos[target.repo]![target.path]!);
  }

  const hubServer = http.createServer(hub);
  const cdnServer = http.createServer(cdnHandler);
  const listen = (s: http.Server) =>
    new Promise<string>((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
  endpoint = await listen(hubServer);
  cdn = await listen(cdnServer);
  return {
    endpoint,
    cdn,
    commitOf,
    requests,
    close: async () => {
      for (const s of [hubServer, cdnServer]) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
}
