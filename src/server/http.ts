// node:http plumbing: JSON bodies under a size limit, JSON replies, the bearer token.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { ApiError, badRequest } from './api-error.js';

function tooLarge(limit: number): ApiError {
  // The rest of the body is not read: the connection is closed after the reply.
  return new ApiError(413, `the request body is over the ${limit}-byte limit (images count in base64)`, 'request_too_large', null, { connection: 'close' });
}

/** The body parsed as JSON; 413 past `limit` bytes (checked before reading when announced), 400 if not JSON. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const announced = Number(req.headers['content-length']);
  if (announced > limit) throw tooLarge(limit);
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else {
        // Not destroyed (an async iterator would), so the 413 can still be written; the rest
        // is drained until the reply has gone out and the connection closes.
        req.off('data', onData);
        req.resume();
        reject(tooLarge(limit));
      }
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new ApiError(400, 'the client went away before sending the whole body', 'client_closed'));
    });
  });
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest(`the body is not valid JSON: ${(err as Error).message}`, null, 'invalid_json');
  }
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
