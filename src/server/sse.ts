// Server-sent events as OpenAI streams them: `data: JSON` frames, then `data: [DONE]`.
import type { ServerResponse } from 'node:http';

import { ApiError } from './api-error.js';

export function startSse(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    // Proxies such as nginx would otherwise hold tokens back in their buffers.
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
}

/** False when the client is not keeping up: the response buffers more than its high-water mark (see drained()). */
export function sendEvent(res: ServerResponse, data: unknown): boolean {
  if (res.writableEnded || res.destroyed) return true;
  return res.write(`data: ${JSON.stringify(data)}\n\n`);
}

/**
 * Resolves once the response has flushed what it buffers (after sendEvent returned false), so a
 * slow reader slows its own generation down instead of piling events up in memory; rejects with
 * `client_stalled` when that takes over `timeoutMs` (the caller then drops the connection and
 * frees the slot), and resolves at once if the response is gone (its 'close' stops the work).
 */
export function drained(res: ServerResponse, timeoutMs: number): Promise<void> {
  if (res.destroyed || res.writableEnded || !res.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: ApiError) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onDrain);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const timer = setTimeout(
      () => done(new ApiError(408, `the client read nothing of the stream for ${timeoutMs} ms`, 'client_stalled')),
      timeoutMs,
    );
    res.on('drain', onDrain);
    res.on('close', onDrain);
  });
}

export function endSse(res: ServerResponse): void {
  if (res.writableEnded || res.destroyed) return;
  res.end('data: [DONE]\n\n');
}
