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
 * Rejects with the signal's reason when it aborts (a shutdown).
 */
export function drained(res: ServerResponse, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  if (res.destroyed || res.writableEnded || !res.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: unknown) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onDrain);
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    // A shutdown does not wait out a reader that has stopped reading.
    const onAbort = () => done(signal!.reason ?? new ApiError(503, 'the request was aborted', 'aborted'));
    const timer = setTimeout(
      () => done(new ApiError(408, `the client read nothing of the stream for ${timeoutMs} ms`, 'client_stalled')),
      timeoutMs,
    );
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    res.on('drain', onDrain);
    res.on('close', onDrain);
  });
}

export function endSse(res: ServerResponse): void {
  if (res.writableEnded || res.destroyed) return;
  res.end('data: [DONE]\n\n');
}
