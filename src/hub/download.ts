// HTTP against the hub, and one file downloaded resumably and verified. node:http(s) rather than
// fetch so that redirects, Range requests and where the token goes are decided here, not by a
// client's defaults. Bytes land in `<dest>.incomplete`; a dropped connection resumes with Range;
// only bytes matching the hub's size (and sha256, for LFS files) are renamed to `dest`.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';

import { HovleError } from '../errors.js';

export interface HubHttpOptions {
  /** Sent as `Authorization: Bearer` to `tokenOrigin` only. */
  token?: string;
  /**
   * The hub endpoint's origin. Redirects leave it for a CDN whose signed URLs need no token, and
   * a token must never travel to a host the user did not name.
   */
  tokenOrigin?: string;
  signal?: AbortSignal;
  /** Redirects followed per request (default 10). */
  maxRedirects?: number;
  /** A connection silent this long counts as dropped (default 60 s). */
  idleTimeoutMs?: number;
}

export interface HubResponse {
  res: http.IncomingMessage;
  status: number;
  /** Where the response came from, after redirects. */
  url: URL;
}

const USER_AGENT = `hovle (node ${process.version})`;

/** A failure worth retrying: lost connection, 5xx, 429. */
class Transient extends Error {
  override name = 'Transient';
}

export function abortedError(signal: AbortSignal | undefined, what: string): HovleError {
  return new HovleError('ABORTED', `${what} aborted`, { cause: signal?.reason });
}

function requestOnce(url: URL, headers: Record<string, string>, options: HubHttpOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? https.get : http.get;
    const req = get(url, { headers, ...(options.signal ? { signal: options.signal } : {}), timeout: options.idleTimeoutMs ?? 60_000 }, resolve);
    // The timeout also covers a stalled body: the response then errors and the download resumes.
    req.on('timeout', () => req.destroy(new Transient(`no data from ${url.host} for ${(options.idleTimeoutMs ?? 60_000) / 1000} s`)));
    req.on('error', reject);
  });
}

/** GET with redirects followed here; the caller consumes or discards `res`. */
export async function hubGet(url: string, options: HubHttpOptions & { headers?: Record<string, string> } = {}): Promise<HubResponse> {
  let current = new URL(url);
  const maxRedirects = options.maxRedirects ?? 10;
  for (let redirects = 0; ; redirects++) {
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, ...options.headers };
    if (options.token && current.origin === options.tokenOrigin) headers.authorization = `Bearer ${options.token}`;
    const res = await requestOnce(current, headers, options);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (![301, 302, 303, 307, 308].includes(status) || !location) return { res, status, url: current };
    res.resume();
    if (redirects >= maxRedirects) throw new HovleError('DOWNLOAD_FAILED', `${url}: more than ${maxRedirects} redirects`);
    const next = new URL(location, current);
    // A downgrade would expose the request (and, on the same host, the token) to the network.
    if (next.protocol !== 'https:' && (next.protocol !== 'http:' || current.protocol === 'https:')) {
      throw new HovleError('DOWNLOAD_FAILED', `${url}: refusing a redirect from ${current.protocol} to ${next.href}`);
    }
    current = next;
  }
}

/**
 * The error for a non-success status. 401/403 name HF_TOKEN because the hub answers both for
 * private and gated repos, and for repos that do not exist when no token is sent.
 */
export function statusError(status: number, headers: http.IncomingHttpHeaders, what: string, tokenSent: boolean): Error {
  const hubMessage = typeof headers['x-error-message'] === 'string' ? `: ${headers['x-error-message']}` : '';
  if (status === 408 || status === 429 || status >= 500) return new Transient(`${what}: HTTP ${status}${hubMessage}`);
  if (status === 401 || status === 403) {
    const hint = tokenSent
      ? 'the token in HF_TOKEN does not grant access to it (gated repos need their terms accepted on the hub)'
      : 'it is private, gated or does not exist; set HF_TOKEN to an access token that can read it';
    return new HovleError('DOWNLOAD_FAILED', `${what}: HTTP ${status}${hubMessage} (${hint})`);
  }
  if (status === 404) {
    const kind = headers['x-error-code'];
    const which = kind === 'RevisionNotFound' ? 'revision not found' : kind === 'EntryNotFound' ? 'file not found' : 'not found';
    return new HovleError('DOWNLOAD_FAILED', `${what}: ${which} (HTTP 404${hubMessage}); check the repo id and --revision`);
  }
  return new HovleError('DOWNLOAD_FAILED', `${what}: HTTP ${status}${hubMessage}`);
}

export interface RetryOptions {
  /** Consecutive failed attempts (without progress) retried before giving up (default 5). */
  retries?: number;
  /** First backoff; doubles per consecutive failure, capped at 30 s (default 1 s). */
  retryDelayMs?: number;
  signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds; transient failures (lost connections, 5xx, 429) are retried
 * with backoff. `attempt` returns normally or throws; its `progressed()` resets the count, so a
 * long download over a flaky link is not given up just because it dropped many times in total.
 */
export async function withRetries<T>(what: string, options: RetryOptions, attempt: (progressed: () => void) => Promise<T>): Promise<T> {
  const retries = options.retries ?? 5;
  const base = options.retryDelayMs ?? 1000;
  let failures = 0;
  for (;;) {
    if (options.signal?.aborted) throw abortedError(options.signal, what);
    try {
      return await attempt(() => {
        failures = 0;
      });
    } catch (err) {
      if (options.signal?.aborted) throw abortedError(options.signal, what);
      // HovleErrors are verdicts (HTTP 404, sha mismatch, disk full...), anything else came from the network.
      if (err instanceof HovleError) throw err;
      failures++;
      if (failures > retries) {
        throw new HovleError('DOWNLOAD_FAILED', `${what}: ${(err as Error).message} (gave up after ${failures} attempts; run again to resume)`, { cause: err });
      }
      try {
        await sleep(Math.min(30_000, base * 2 ** (failures - 1)), undefined, options.signal ? { signal: options.signal } : {});
      } catch {
        throw abortedError(options.signal, what);
      }
    }
  }
}

export interface DownloadOptions extends HubHttpOptions, RetryOptions {
  /** The size the hub lists; anything else is an error. */
  size: number;
  /** LFS files' sha256 (hex). Without it only the size is checked and nothing is resumed. */
  sha256?: string;
  /** Bytes of this file on disk so far (resumed ones included), of `size`. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  /** Bytes transferred by this call: less than `bytes` when a partial file was resumed. */
  downloadedBytes: number;
  /** Size of the partial file this call found and resumed (0: started afresh). */
  resumedFrom: number;
}

async function io<T>(path: string, op: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw new HovleError('IO_ERROR', `cannot ${op} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function hashFile(path: string, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  await io(path, 'read', async () => {
    for await (const chunk of createReadStream(path, signal ? { signal } : {})) hash.update(chunk as Buffer);
  }).catch((err: unknown) => {
    throw signal?.aborted ? abortedError(signal, `hashing ${path}`) : err;
  });
}

// "bytes 100-199/200" -> 100
function rangeStart(header: string | undefined): number | undefined {
  const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(header ?? '');
  return m ? Number(m[1]) : undefined;
}

/**
 * Downloads `url` to `dest`. An earlier partial `<dest>.incomplete` is resumed (LFS files only:
 * without a hash a splice of two versions could not be detected). Aborting keeps the partial
 * file; a sha256 or size mismatch deletes it.
 */
export async function downloadFile(url: string, dest: string, options: DownloadOptions): Promise<DownloadResult> {
  const partial = `${dest}.incomplete`;
  const resumable = options.sha256 !== undefined;
  let resumedFrom = resumable ? await sizeOf(partial) : 0;
  if (resumedFrom > options.size) resumedFrom = 0;
  try {
    return await attemptDownload(url, dest, partial, resumedFrom, options);
  } catch (err) {
    // An old partial may hold another version's bytes (a branch moved, a crash mid-write): one fresh try.
    if (resumedFrom > 0 && err instanceof HovleError && hashMismatches.has(err)) {
      return { ...(await attemptDownload(url, dest, partial, 0, options)), resumedFrom: 0 };
    }
    throw err;
  }
}

const hashMismatches = new WeakSet<HovleError>();

async function attemptDownload(url: string, dest: string, partial: string, startAt: number, options: DownloadOptions): Promise<DownloadResult> {
  const { size, signal } = options;
  const what = `download of ${url}`;
  let hash = options.sha256 !== undefined ? createHash('sha256') : undefined;
  if (startAt > 0 && hash) await hashFile(partial, hash, signal);
  let offset = startAt;
  let downloaded = 0;
  options.onProgress?.(offset, size);

  const fh: FileHandle = await io(partial, 'open', () => open(partial, startAt > 0 ? 'r+' : 'w'));
  // Deleted only after the handle is closed (Windows cannot delete an open file).
  let discard = false;
  try {
    const restart = async () => {
      await io(partial, 'truncate', () => fh.truncate(0));
      offset = 0;
      hash = options.sha256 !== undefined ? createHash('sha256') : undefined;
    };
    await withRetries(what, options, async (progressed) => {
      while (offset < size) {
        const { res, status } = await hubGet(url, { ...options, headers: offset > 0 ? { range: `bytes=${offset}-` } : {} });
        if (status === 206 && offset > 0) {
          const start = rangeStart(res.headers['content-range']);
          if (start !== offset) {
            res.destroy();
            throw new HovleError('DOWNLOAD_FAILED', `${what}: asked for bytes ${offset}- and got Content-Range '${res.headers['content-range'] ?? ''}'`);
          }
        } else if (status === 200) {
          // The server ignored Range (or the request had none): the body is the whole file.
          if (offset > 0) await restart();
        } else if (status === 416 && offset > 0) {
          // The partial is not a prefix the server recognises: start over.
          res.resume();
          await restart();
          continue;
        } else {
          res.resume();
          throw statusError(status, res.headers, what, Boolean(options.token));
        }
        for await (const chunk of res as AsyncIterable<Buffer>) {
          if (offset + chunk.length > size) {
            res.destroy();
            discard = true;
            throw new HovleError('DOWNLOAD_FAILED', `${what}: the server sent more than the ${size} bytes the hub lists`);
          }
          await io(partial, 'write', () => fh.write(chunk, 0, chunk.length, offset));
          hash?.update(chunk);
          offset += chunk.length;
          downloaded += chunk.length;
          progressed();
          options.onProgress?.(offset, size);
        }
        if (offset < size) throw new Transient(`connection closed after ${offset} of ${size} bytes`);
      }
    });
    await io(partial, 'sync', () => fh.sync());
  } finally {
    await fh.close().catch(() => undefined);
    if (discard) await rm(partial, { force: true });
  }

  const onDisk = await sizeOf(partial);
  if (onDisk !== size) {
    await rm(partial, { force: true });
    throw new HovleError('DOWNLOAD_FAILED', `${what}: ${onDisk} bytes on disk, the hub lists ${size}`);
  }
  if (hash) {
    const got = hash.digest('hex');
    if (got !== options.sha256!.toLowerCase()) {
      await rm(partial, { force: true });
      const err = new HovleError('DOWNLOAD_FAILED', `${what}: sha256 ${got} does not match the hub's ${options.sha256}; the file was deleted, run again`);
      hashMismatches.add(err);
      throw err;
    }
  }
  await io(dest, 'rename to', () => rename(partial, dest));
  return { path: dest, bytes: size, downloadedBytes: downloaded, resumedFrom: startAt };
}
