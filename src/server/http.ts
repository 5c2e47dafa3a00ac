// node:http plumbing: JSON bodies under a size limit, JSON replies, the bearer token.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { ApiError, badRequest } from './api-error.js';

function tooLarge(limit: number): ApiError {
  // The rest of the body is not read: the connection is closed after the reply.
  return new ApiError(413, `the request body is over the ${limit}-byte limit (images count in base64)`, 'request_too_large', null, { connection: 'close' });
}

/** Deeper JSON than any chat request needs; refused before parsing (a parse of millions of levels blocks the event loop for seconds). */
export const MAX_JSON_DEPTH = 64;

/**
 * The body parsed as JSON; 413 past `limit` bytes (checked before reading when announced), 408
 * when it has not all arrived `timeoutMs` after the request did (a client trickling its body
 * must not keep the connection forever), 400 if not JSON or nested deeper than MAX_JSON_DEPTH.
 */
export async function readJsonBody(req: IncomingMessage, limit: number, timeoutMs = 60_000, signal?: AbortSignal): Promise<unknown> {
  const announced = Number(req.headers['content-length']);
  if (announced > limit) throw tooLarge(limit);
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // Not destroyed (an async iterator would), so the error can still be written; the rest is
    // drained until the reply has gone out and the connection closes.
    const settle = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    const stop = (err: unknown) => {
      settle();
      req.off('data', onData);
      req.resume();
      reject(err);
    };
    // A shutdown does not wait for a body still on its way (up to timeoutMs).
    const onAbort = () => stop(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => stop(new ApiError(408, `the request body did not arrive within ${timeoutMs} ms`, 'request_timeout', null, { connection: 'close' })),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else stop(tooLarge(limit));
    };
    req.on('data', onData);
    req.once('end', () => {
      settle();
      resolve(Buffer.concat(chunks, size));
    });
    req.once('error', (err) => {
      settle();
      reject(err);
    });
    req.once('close', () => {
      settle();
      if (!req.complete) reject(new ApiError(400, 'the client went away before sending the whole body', 'client_closed'));
    });
    if (signal?.aborted) onAbort();
  });
  const depth = jsonDepth(body, MAX_JSON_DEPTH);
  if (depth > MAX_JSON_DEPTH) throw badRequest(`the body nests JSON deeper than ${MAX_JSON_DEPTH} levels`, null, 'invalid_json');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest(`the body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
}

/** The deepest nesting of arrays and objects in JSON text (strings skipped), counting stops past `max`. */
export function jsonDepth(json: Uint8Array, max: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > deepest && (deepest = depth) > max) return deepest;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

export function sendError(res: ServerResponse, err: ApiError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, err.body(), err.headers);
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** A checker for `Authorization: Bearer KEY`; comparing digests keeps the time independent of the key. */
export function bearerCheck(apiKey: string): (req: IncomingMessage) => void {
  const expected = digest(apiKey);
  return (req) => {
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m || !timingSafeEqual(digest(m[1]!.trim()), expected)) {
      throw new ApiError(401, m ? 'incorrect API key' : 'missing API key: send Authorization: Bearer KEY', 'invalid_api_key', null, { 'www-authenticate': 'Bearer' });
    }
  };
}
