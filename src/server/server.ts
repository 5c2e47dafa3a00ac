// The HTTP server: routing, the API key, readiness, the slot queue, and a shutdown that lets
// running answers finish. One model per server; every request gets its own Session (and KV
// cache), disposed when the answer is sent.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';

import { HovleError } from '../errors.js';
import type { HovleModel } from '../runtime/model.js';
import { validateAnswerSampling, type SessionOptions } from '../session/session.js';
import { ApiError, toApiError } from './api-error.js';
import { runCompletion, type Conversation } from './completion.js';
import { bearerCheck, readJsonBody, sendError, sendJson } from './http.js';
import { resolveImageUrl, type ImageUrlOptions } from './image-url.js';
import { parseChatRequest, type ChatRequest, type ChatTurn } from './openai-schema.js';
import { RequestQueue, shuttingDown } from './request-queue.js';

/** How long a shutdown that aborted requests waits for their last words to reach the clients. */
const FLUSH_GRACE_MS = 1000;

export interface ServerOptions {
  /** The id in /v1/models and in responses. Default: the GGUF's file name without `.gguf`. */
  modelName?: string;
  /** Context options of each request's session (contextSize, kvType, threads...). */
  session?: Omit<SessionOptions, 'system'>;
  /** Generations running at once. Default 1. */
  parallel?: number;
  /** Requests waiting for a slot beyond those; more get 429. Default 8. */
  queue?: number;
  /** Largest request body (images arrive base64-encoded in it). Default 32 MiB. */
  maxBodyBytes?: number;
  /** A request body not complete this long after the request arrived is refused (408) and its connection closed. Default 60 s. */
  bodyTimeoutMs?: number;
  /**
   * A streaming client that leaves the events sent to it unread this long (its connection's
   * buffers full) is disconnected and its generation stopped. Until then its generation waits
   * for it rather than buffering tokens. Default 30 s.
   */
  writeTimeoutMs?: number;
  /** Images per request, the whole conversation counted. Default 4. */
  maxImages?: number;
  /** Refuse images with more pixels (checked before decoding). Default: the preprocessor's 64 MP. */
  maxImagePixels?: number;
  /** Tiles per image, and the most a request's `max_tiles` may ask for. Default: the model's. */
  maxTiles?: number;
  /** Directory that image_url may name local files in; unset refuses local paths. */
  allowLocalFiles?: string;
  /** Require `Authorization: Bearer <apiKey>` on /v1/*. */
  apiKey?: string;
  /** Retry-After seconds sent with a 429. Default 1. */
  retryAfterSeconds?: number;
  /** One line per request (method, path, status, time, tokens). */
  log?: (line: string) => void;
}

export type ServerState = 'loading' | 'ready' | 'failed' | 'closing' | 'closed';

export interface ServerStatus {
  state: ServerState;
  model: string | null;
  running: number;
  queued: number;
}

export interface HovleServer {
  /** Starts listening (port 0: any free port); resolves with the address bound. */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  address(): AddressInfo | null;
  status(): ServerStatus;
  /**
   * Stops accepting requests, refuses those still queued (503), lets running ones finish for up
   * to `timeoutMs` (default 30 s), then aborts what is left and closes every connection.
   */
  close(options?: { timeoutMs?: number }): Promise<void>;
}

const MiB = 1024 * 1024;
// /health's status words; 'ok' is what llama.cpp's endpoint and most health checks expect.
const HEALTH: Record<ServerState, string> = { loading: 'loading', ready: 'ok', failed: 'error', closing: 'shutting_down', closed: 'shutting_down' };
const clientGone = () => new ApiError(499, 'the client closed the connection', 'client_closed');

/**
 * An OpenAI Chat Completions compatible server for one model. Pass a promise to listen while the
 * model loads: /health and the API answer 503 until it is ready.
 */
export function createServer(model: HovleModel | Promise<HovleModel>, options: ServerOptions = {}): HovleServer {
  const parallel = options.parallel ?? 1;
  const queue = new RequestQueue(parallel, options.queue ?? 8, options.retryAfterSeconds ?? 1);
  const maxBody = options.maxBodyBytes ?? 32 * MiB;
  const checkKey = options.apiKey ? bearerCheck(options.apiKey) : undefined;
  const imageOptions: ImageUrlOptions = { maxBytes: maxBody, ...(options.allowLocalFiles ? { allowLocalFiles: options.allowLocalFiles } : {}) };
  const inflight = new Map<Promise<unknown>, AbortController>();
  let state: ServerState = 'loading';
  let loaded: HovleModel | undefined;
  let closing: Promise<void> | undefined;

  const nameOf = (m: HovleModel) => options.modelName ?? basename(m.path).replace(/\.gguf$/i, '');
  Promise.resolve(model).then(
    (m) => {
      loaded = m;
      if (state === 'loading') state = 'ready';
    },
    () => {
      if (state === 'loading') state = 'failed';
    },
  );

  function readyModel(): HovleModel {
    if (state === 'closing' || state === 'closed') throw shuttingDown();
    if (!loaded) {
      throw new ApiError(503, state === 'failed' ? 'the model failed to load' : 'the model is still loading; retry shortly', 'model_not_ready', null, { 'retry-after': '1' });
    }
    return loaded;
  }

  function modelObject(m: HovleModel) {
    return { id: nameOf(m), object: 'model', created: 0, owned_by: 'hovle' };
  }

  async function images(turn: ChatTurn) {
    const out = [];
    for (const ref of turn.images) out.push(await resolveImageUrl(ref.url, ref.param, imageOptions));
    return { text: turn.text, images: out };
  }

  async function conversation(r: ChatRequest): Promise<Conversation> {
    const history = [];
    for (const h of r.history) history.push({ user: await images(h.user), assistant: h.assistant });
    return { ...(r.system !== undefined ? { system: r.system } : {}), history, prompt: await images(r.prompt) };
  }

  async function chat(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<string> {
    const m = readyModel();
    const body = await readJsonBody(req, maxBody, options.bodyTimeoutMs ?? 60_000, signal);
    const request = parseChatRequest(body, { maxImages: options.maxImages ?? 4, maxTiles: options.maxTiles ?? m.hparams.vision.maxTiles });
    // Before queueing and fetching images: the session would refuse these options only then.
    validateAnswerSampling(m, request.generation);
    const conv = await conversation(request);
    const release = await queue.acquire(signal);
    try {
      const generation = { ...request.generation };
      if (generation.maxTiles === undefined && options.maxTiles !== undefined) generation.maxTiles = options.maxTiles;
      const s = await runCompletion(res, {
        model: m,
        modelName: nameOf(m),
        session: options.session ?? {},
        conversation: conv,
        generation,
        ...(options.maxImagePixels !== undefined ? { maxPixels: options.maxImagePixels } : {}),
        stream: request.stream,
        includeUsage: request.includeUsage,
        writeTimeoutMs: options.writeTimeoutMs ?? 30_000,
        signal,
      });
      return s ? `${s.promptTokens}+${s.completionTokens} tokens, ${s.finishReason}` : 'stream ended early';
    } finally {
      release();
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<string> {
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    if (path === '/health') {
      const { state: st, ...rest } = status();
      sendJson(res, st === 'ready' ? 200 : 503, { status: HEALTH[st], ...rest });
      return '';
    }
    if (!path.startsWith('/v1/')) throw new ApiError(404, `no route ${method} ${path}`, 'not_found');
    checkKey?.(req);
    const allow = (m: string) => {
      if (method !== m) throw new ApiError(405, `${path} takes ${m}`, 'method_not_allowed', null, { allow: m });
    };
    if (path === '/v1/chat/completions') {
      allow('POST');
      return chat(req, res, signal);
    }
    if (path === '/v1/models') {
      allow('GET');
      const m = readyModel();
      sendJson(res, 200, { object: 'list', data: [modelObject(m)] });
      return '';
    }
    if (path.startsWith('/v1/models/')) {
      allow('GET');
      const m = readyModel();
      let id = path.slice('/v1/models/'.length);
      try {
        id = decodeURIComponent(id);
      } catch {
        // Not percent-encoding after all: compared as sent.
      }
      if (id !== nameOf(m)) throw new ApiError(404, `the model '${id}' does not exist (this server has '${nameOf(m)}')`, 'model_not_found', 'model');
      sendJson(res, 200, modelObject(m));
      return '';
    }
    throw new ApiError(404, `no route ${method} ${path}`, 'not_found');
  }

  const http: Server = createHttpServer((req, res) => {
    const started = performance.now();
    const controller = new AbortController();
    // 'close' before the response finished means the client went away: stop its generation
    // (and free its slot) rather than compute an answer nobody reads.
    res.once('close', () => {
      if (!res.writableFinished) controller.abort(clientGone());
    });
    if (state === 'closing' || state === 'closed') {
      // A keep-alive connection can still bring a request in after close() began.
      if (req.url?.startsWith('/health')) sendJson(res, 503, { status: 'shutting_down' }, { connection: 'close' });
      else sendError(res, shuttingDown());
      return;
    }
    const done = route(req, res, controller.signal)
      .catch((err: unknown) => {
        // A generation the shutdown cut short reports why, not the ABORTED it surfaced as.
        const reason: unknown = controller.signal.reason;
        const e = controller.signal.aborted && reason instanceof ApiError ? reason : toApiError(err);
        if (!res.destroyed && !res.writableEnded) sendError(res, e);
        return e.code ?? '';
      })
      .then(async (note) => {
        if (!res.writableFinished && !res.destroyed) await new Promise((resolve) => res.once('close', resolve));
        const reason: unknown = controller.signal.reason;
        const aborted = controller.signal.aborted ? ` aborted (${reason instanceof ApiError ? reason.code : 'unknown'})` : '';
        options.log?.(`${req.method} ${req.url} ${res.statusCode}${aborted} ${Math.round(performance.now() - started)} ms${note ? ` ${note}` : ''}`);
      });
    inflight.set(done, controller);
    void done.finally(() => inflight.delete(done));
  });

  function status(): ServerStatus {
    return { state, model: loaded ? nameOf(loaded) : options.modelName ?? null, running: queue.running, queued: queue.queued };
  }

  return {
    listen(port = 8080, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        // EADDRINUSE, EADDRNOTAVAIL, EACCES: the caller's setting, as a typed error.
        const fail = (err: NodeJS.ErrnoException) => reject(new HovleError('IO_ERROR', `cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
        http.once('error', fail);
        http.listen(port, host, () => {
          http.off('error', fail);
          resolve(http.address() as AddressInfo);
        });
      });
    },
    address() {
      const a = http.address();
      return a && typeof a === 'object' ? a : null;
    },
    status,
    close({ timeoutMs = 30_000 } = {}) {
      closing ??= (async () => {
        state = 'closing';
        queue.close();
        const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
        http.closeIdleConnections();
        const pending = () => Promise.allSettled([...inflight.keys()]);
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)));
        if (await Promise.race([pending().then(() => false), expired])) {
          for (const c of inflight.values()) c.abort(shuttingDown());
          // Each request stops at the abort and writes its last words; a request only ends when
          // its connection closes, so a client that does not read them must not hold the exit:
          // connections still open after this grace are closed below.
          await Promise.race([pending(), new Promise((resolve) => setTimeout(resolve, FLUSH_GRACE_MS).unref())]);
        }
        clearTimeout(timer);
        http.closeAllConnections();
        await pending();
        await stopped;
        state = 'closed';
      })();
      return closing;
    },
  };
}
