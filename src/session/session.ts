// A conversation with one model: the chat template, image preprocessing, sampling, streaming,
// abort and stats on top of a ModelContext. Turns are appended to the KV cache as tokens, so a
// follow-up question about an image already in the conversation does not recompute the image.
import { HovleError } from '../errors.js';
import type { ImageInput } from '../image/preprocess.js';
import { releaseScratch, type ContextOptions, type EvaluateOptions, type EvaluateResult, type HovleModel, type ModelContext, type PixelTiles } from '../runtime/model.js';
import { tokensPerTile } from '../model/hparams.js';
import { Sampler, validateSampling, type SamplingOptions } from '../runtime/sampler.js';
import { GROUNDING_TAGS } from './grounding.js';
import { StopMatcher } from './stop.js';
import { ASSISTANT_START, checkNoImageContext, checkTemplate, END_OF_TURN, expandImages, systemTurn, USER_START, userContent, type TemplateTokens } from './template.js';

export interface SessionOptions extends Omit<ContextOptions, 'embeddingContextSize'> {
  /** Replaces the model's default system message. */
  system?: string;
}

export interface UserMessage {
  text: string;
  images?: ImageInput[];
}

export interface AskOptions extends SamplingOptions {
  /** Default 512. */
  maxTokens?: number;
  /** Generation stops before the first of these strings appears in the answer. */
  stop?: string[];
  signal?: AbortSignal;
  /** Called with each piece of text as it is decoded (never half a character). */
  onToken?: (text: string, tokenId: number) => void;
  /** Tiles per image (default: the model's). */
  maxTiles?: number;
  /** Refuse images with more pixels (checked before decoding; default 64 MP). */
  maxPixels?: number;
}

/** How a turn's images are preprocessed, and when to give up. */
type TurnOptions = Pick<AskOptions, 'maxTiles' | 'maxPixels' | 'signal'>;

export interface AskStats {
  preprocessMs: number;
  promptTokens: number;
  prefillMs: number;
  prefillTokensPerSecond: number;
  generatedTokens: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
  timeToFirstTokenMs: number;
}

export interface AskResult {
  text: string;
  tokens: number[];
  stopReason: 'eos' | 'stop' | 'maxTokens' | 'contextFull';
  stats: AskStats;
  /** Sizes of this turn's images (for mapping grounding boxes back to pixels). */
  images: Array<{ width: number; height: number; grid: [number, number]; tiles: number }>;
}

function checkObject(o: unknown, what: string): void {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new HovleError('INVALID_ARGUMENT', `${what} must be an object`);
}

/**
 * Throws INVALID_ARGUMENT (with `param`) for sampling options an answer from this model cannot
 * use: what a Sampler refuses for its vocabulary, and a positive logitBias on <IMG_CONTEXT>,
 * which stands for an image row and cannot be evaluated as text (a negative one is a ban).
 * Cheap and model-level, so a caller (the server) can check before it queues or fetches images.
 */
export function validateAnswerSampling(model: HovleModel, options: SamplingOptions): void {
  validateSampling(options, model.hparams.vocabSize);
  const imageId = model.vocab.imageContextId;
  const bias: unknown = options.logitBias?.[imageId];
  if (typeof bias === 'number' && bias > 0) {
    throw new HovleError('INVALID_ARGUMENT', `logitBias: token ${imageId} (<IMG_CONTEXT>) stands for an image row and cannot be generated; it can only be banned`, { param: 'logitBias' });
  }
}

function templateTokens(model: HovleModel): TemplateTokens {
  const { tokens, imageStartId, imageEndId, imageContextId } = model.vocab;
  return { imageStart: tokens[imageStartId]!, imageEnd: tokens[imageEndId]!, imageContext: tokens[imageContextId]! };
}

/** A turn's message and options, checked before the call takes its place in line. */
function checkTurn(message: unknown, options: unknown): void {
  checkObject(options, 'options');
  const { signal } = options as TurnOptions;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new HovleError('INVALID_ARGUMENT', 'signal must be an AbortSignal');
  if (typeof message === 'string') return;
  checkObject(message, 'the message (a string or { text, images })');
  const { text, images } = message as Partial<UserMessage>;
  if (typeof text !== 'string') throw new HovleError('INVALID_ARGUMENT', 'message text must be a string');
  if (images !== undefined && !Array.isArray(images)) throw new HovleError('INVALID_ARGUMENT', 'message images must be an array of image inputs');
}

export class Session {
  private turns = 0;
  /** prefill() left a user turn open: the next ask() continues it. */
  private openTurn = false;
  private disposed = false;
  /** Settles when the call holding the session (see acquire()) releases it. */
  private held: Promise<void> = Promise.resolve();
  /**
   * An aborted answer's decode run, still closing, and the tokens the cache will hold once it
   * has: the session stays held until then, and cachedTokens reports that count meanwhile.
   */
  private closing: { done: Promise<unknown>; cached: number } | undefined;

  private constructor(
    readonly model: HovleModel,
    private readonly ctx: ModelContext,
    readonly system: string,
  ) {}

  static async create(model: HovleModel, options: SessionOptions = {}): Promise<Session> {
    checkTemplate(model.hparams.chat.template);
    checkObject(options, 'session options');
    const { system, ...ctxOptions } = options;
    if (system !== undefined && typeof system !== 'string') throw new HovleError('INVALID_ARGUMENT', 'system must be a string');
    if (system !== undefined) checkNoImageContext(system, 'system prompt', templateTokens(model));
    const ctx = await model.createContext(ctxOptions);
    return new Session(model, ctx, system ?? model.hparams.chat.systemMessage);
  }

  /**
   * Appends the start of a user turn (typically an image plus instructions) without asking
   * anything yet. Fork the session afterwards and ask each branch its own question: the image
   * is computed once. The next ask() on this session continues the same turn.
   */
  prefill(message: UserMessage | string, options: TurnOptions = {}): Promise<{ promptTokens: number; ms: number }> {
    return this.appendTurn(message, options, false);
  }

  /**
   * Appends a finished exchange (a user turn and the assistant's reply) without generating
   * anything: how a client that keeps the conversation itself, such as an HTTP API caller,
   * replays it. The reply goes through the same template as the answer ask() would have left
   * in the cache, and the next turn follows it as it would follow that answer.
   */
  async appendExchange(message: UserMessage | string, reply: string, options: TurnOptions = {}): Promise<{ promptTokens: number; ms: number }> {
    if (typeof reply !== 'string') throw new HovleError('INVALID_ARGUMENT', 'reply must be a string');
    return this.appendTurn(message, options, true, reply);
  }

  /** A turn evaluated without generating: left open (prefill) or closed with `reply`. */
  private async appendTurn(message: UserMessage | string, options: TurnOptions, close: boolean, reply = ''): Promise<{ promptTokens: number; ms: number }> {
    checkTurn(message, options);
    const release = await this.acquire(options.signal);
    try {
      const t0 = performance.now();
      const { ids, images } = await this.turnTokens(message, options, close, reply);
      await this.evaluateTurn(ids, images, { logits: 'last', ...(options.signal ? { signal: options.signal } : {}) });
      this.turns++;
      this.openTurn = !close;
      return { promptTokens: ids.length, ms: performance.now() - t0 };
    } finally {
      release();
    }
  }

  /**
   * An independent copy of this conversation (its KV cache copied, not recomputed), taken once
   * the calls made on this session before it have finished.
   */
  async fork(): Promise<Session> {
    if (this.disposed) throw new HovleError('DISPOSED', 'the session has been disposed');
    const release = await this.acquire();
    try {
      if (this.disposed) throw new HovleError('DISPOSED', 'the session has been disposed');
      const s = new Session(this.model, await this.ctx.fork(), this.system);
      s.turns = this.turns;
      s.openTurn = this.openTurn;
      return s;
    } finally {
      release();
    }
  }

  /**
   * Waits for the calls made on this session before this one, then holds the session until the
   * returned release() is called: a turn's template depends on the turns before it, so turns
   * cannot interleave. A stream() holds it from its first next() until it ends (finished,
   * returned, or thrown); one left open blocks the calls behind it. An abort while waiting
   * throws at once and gives up the place in line.
   */
  private async acquire(signal?: AbortSignal): Promise<() => void> {
    const before = this.held;
    let release!: () => void;
    this.held = new Promise<void>((resolve) => (release = resolve));
    if (!signal) {
      await before;
      return release;
    }
    try {
      await untilAborted(before, signal, () => new HovleError('ABORTED', 'aborted while waiting for the session', { cause: signal.reason }));
    } catch (e) {
      // The place in line passes on once the calls before this one are done.
      void before.then(release);
      throw e;
    }
    return release;
  }

  /**
   * Template text of the next turn as tokens, and its preprocessed images. A `reply` follows the
   * assistant header: tokenized with the turn, as the reference tokenizes a whole history.
   */
  private async turnTokens(message: UserMessage | string, options: TurnOptions, close: boolean, reply = '') {
    if (this.disposed) throw new HovleError('DISPOSED', 'the session has been disposed');
    const msg = typeof message === 'string' ? { text: message } : message;
    const inputs = msg.images ?? [];
    const perTile = tokensPerTile(this.model.hparams.vision);
    const first = this.turns === 0;
    const tokens = templateTokens(this.model);
    checkNoImageContext(msg.text, 'message', tokens);
    checkNoImageContext(reply, 'reply', tokens);
    const textWith = (tiles: readonly number[], contextPerTile: number) => {
      const content = expandImages(userContent(msg.text, inputs.length), tiles, contextPerTile, tokens);
      if (this.openTurn) return close ? content + END_OF_TURN + ASSISTANT_START + reply : content;
      const open = (first ? systemTurn(this.system) : END_OF_TURN) + USER_START + content;
      return close ? open + END_OF_TURN + ASSISTANT_START + reply : open;
    };
    // A turn that cannot fit is refused before the work it would take: from the length of its
    // text (tokenizing takes about a second per few MB), and from its images' tiles, each image
    // counted as one tile until it is preprocessed. Image-context tokens are one position each.
    const room = this.ctx.contextSize - this.ctx.cached.llm;
    const textLeast = this.model.tokenizer.minTokens(textWith(inputs.map(() => 0), 0));
    const check = (least: number) => {
      if (least > room) {
        throw new HovleError('CONTEXT_FULL', `the input needs at least ${least} positions, but the context has ${room} left of ${this.ctx.contextSize}`);
      }
    };
    check(textLeast + inputs.length * perTile);
    const images: Array<PixelTiles & { width: number; height: number; grid: [number, number] }> = [];
    const { maxTiles, maxPixels, signal } = options;
    const preprocess = { ...(maxTiles !== undefined ? { maxTiles } : {}), ...(maxPixels !== undefined ? { maxPixels } : {}) };
    let imageTokens = 0;
    try {
      for (const input of inputs) {
        if (signal?.aborted) throw new HovleError('ABORTED', 'aborted while preparing the images', { cause: signal.reason });
        const image = await this.model.preprocessImage(input, preprocess);
        images.push(image);
        imageTokens += image.tiles * perTile;
        check(textLeast + imageTokens + (inputs.length - images.length) * perTile);
      }
      const text = textWith(images.map((i) => i.tiles), perTile);
      return { ids: await this.model.tokenizer.encodeAsync(text, { addBos: first }), images };
    } catch (e) {
      releaseScratch(images.map((i) => i.data));
      throw e;
    }
  }

  /**
   * Evaluates a turn, then frees its images' pixels (17 MB for 7 tiles): they were made for
   * this turn alone, and evaluate() has settled, so nothing reads them any more.
   */
  private async evaluateTurn(ids: Int32Array, images: readonly PixelTiles[], options: EvaluateOptions): Promise<EvaluateResult> {
    try {
      return await this.ctx.evaluate(ids, images, options);
    } finally {
      releaseScratch(images.map((i) => i.data));
    }
  }

  /**
   * After a stop string the cache holds answer tokens whose text runs into the stop string,
   * which the caller never got: the next turn would follow text that is not in the answer. The
   * cache is cut back to the last token that ends within the answer's text, and what of the
   * text is left after that token is tokenized and evaluated, so the conversation holds exactly
   * the answer's text (where it fits, and the tokenizer allows: see Tokenizer.encodesMidText).
   */
  private async keepEmittedText(promptEnd: number, tokens: readonly number[], text: string): Promise<void> {
    const cached = this.ctx.cached.llm - promptEnd;
    const decodeOf = (k: number) => this.model.tokenizer.decode(tokens.slice(0, k), { special: GROUNDING_TAGS });
    let k = Math.min(cached, tokens.length);
    let kept = decodeOf(k);
    // A prefix that ends inside a character decodes to U+FFFD, which is no prefix of the text.
    while (k > 0 && !text.startsWith(kept)) kept = decodeOf(--k);
    if (k === cached && kept === text) return;
    const { llm, embedding } = this.ctx.cached;
    await this.ctx.rewind(llm - (cached - k), embedding - (cached - k));
    const rest = text.slice(kept.length);
    // A tokenizer that prefixes or trims each text it encodes would not give the tokens `rest`
    // has inside the answer: the cache then ends a few characters short of the text instead.
    if (!rest || !this.model.tokenizer.encodesMidText) return;
    const ids = await this.model.tokenizer.encodeAsync(rest, { addBos: false });
    if (ids.length > 0 && ids.length <= this.ctx.contextSize - this.ctx.cached.llm) await this.ctx.evaluate(ids, [], { logits: 'last', greedy: true });
  }

  /** Tokens cached so far (the whole conversation). */
  get cachedTokens(): number {
    return this.closing && !this.disposed ? this.closing.cached : this.ctx.cached.llm;
  }

  /** Asks a question; resolves with the answer and its stats. */
  async ask(message: UserMessage | string, options: AskOptions = {}): Promise<AskResult> {
    const gen = this.stream(message, options);
    for (;;) {
      const r = await gen.next();
      if (r.done) return r.value;
    }
  }

  /** The same as ask(), as an async iterator of text pieces; its return value is the result. */
  async *stream(message: UserMessage | string, options: AskOptions = {}): AsyncGenerator<string, AskResult, void> {
    if (this.disposed) throw new HovleError('DISPOSED', 'the session has been disposed');
    checkTurn(message, options);
    if (options.onToken !== undefined && typeof options.onToken !== 'function') throw new HovleError('INVALID_ARGUMENT', 'onToken must be a function');
    const sampler = this.samplerFor(options); // validates the sampling options before any work
    const maxTokens = options.maxTokens ?? 512;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new HovleError('INVALID_ARGUMENT', 'maxTokens must be a positive integer');
    const stopper = new StopMatcher(options.stop ?? []);
    const signal = options.signal;
    const aborted = () => new HovleError('ABORTED', 'generation was aborted', { cause: signal?.reason });
    if (signal?.aborted) throw aborted();
    const release = await this.acquire(signal);
    try {
      return yield* this.answer(message, options, sampler, maxTokens, stopper, aborted);
    } finally {
      const closing = this.closing;
      if (closing) {
        const finish = () => {
          if (this.closing === closing) this.closing = undefined;
          release();
        };
        void closing.done.then(finish, finish);
      } else {
        release();
      }
    }
  }

  private async *answer(
    message: UserMessage | string, options: AskOptions, sampler: Sampler, maxTokens: number, stopper: StopMatcher, aborted: () => HovleError,
  ): AsyncGenerator<string, AskResult, void> {
    const signal = options.signal;

    const t0 = performance.now();
    const { ids, images } = await this.turnTokens(message, options, true);
    const imageInfo: AskResult['images'] = images.map((i) => ({ width: i.width, height: i.height, grid: i.grid, tiles: i.tiles }));
    const preprocessMs = performance.now() - t0;

    const t1 = performance.now();
    // Greedy sampling takes its pick on the device; otherwise the prompt's last row of logits.
    const step: EvaluateOptions = { logits: 'last', ...(sampler.greedy ? { greedy: true } : {}), ...(signal ? { signal } : {}) };
    const r = await this.evaluateTurn(ids, images, step);
    this.turns++;
    this.openTurn = false;
    const prefillMs = performance.now() - t1;
    const promptEnd = this.ctx.cached.llm;
    const eot = this.model.vocab.eotId;

    const decoder = this.model.tokenizer.decoder({ special: GROUNDING_TAGS });
    const tokens: number[] = [];
    let text = '';
    let stopReason: AskResult['stopReason'] = 'maxTokens';
    let firstTokenAt = 0;
    const t2 = performance.now();
    let tok = r.argmax ? r.argmax[0]! : sampler.sample(r.logits, tokens);
    // The rest of the answer runs as one decode run on the model's thread, a step ahead of this
    // loop, greedy on the device or sampled there with this answer's sampler (its stream goes
    // on where the first pick left it, so a seed gives the same tokens as step by step). It may
    // evaluate up to maxTokens tokens, as a step-by-step loop would (the last answer token goes
    // into the cache too), within the context's room; where this loop stops earlier (a stop
    // string, an abort) the run is rolled back to what that loop would have evaluated. The
    // signal stays with this loop, which checks it between tokens, so an abort leaves the same
    // cache whenever it lands.
    const imageId = this.model.vocab.imageContextId;
    const run = tok !== eot && tok !== imageId && maxTokens > 1 && promptEnd < this.ctx.contextSize
      ? this.ctx.decode(tok, {
        maxSteps: Math.min(maxTokens, this.ctx.contextSize - promptEnd), stopIds: [eot, imageId],
        ...(sampler.greedy ? {} : { sampler, history: tokens }),
      })
      : undefined;
    // The pick being waited for. An abort does not wait for it: the model's thread may be in
    // another session's prefill graph first (seconds on a CPU). The caller gets ABORTED at once;
    // the session stays held until the pick has come (it evaluates the last token emitted, which
    // a later turn follows) and the run has closed, so the cache is the same wherever the abort
    // lands: the prompt and every token emitted.
    let pending: Promise<IteratorResult<number, undefined>> | undefined;
    let abortedOut = false;
    const abortNow = () => {
      abortedOut = true;
      return aborted();
    };
    try {
      for (;;) {
        if (signal?.aborted) throw abortNow();
        if (!firstTokenAt) firstTokenAt = performance.now();
        if (tok === eot) {
          stopReason = 'eos';
          break;
        }
        if (tok === imageId) {
          // Only a greedy pick can be this id (sampling bans it unless a logitBias asks for
          // it): the model's failure, not the caller's, so not INVALID_ARGUMENT.
          throw new HovleError('INTERNAL', 'the model picked <IMG_CONTEXT>, which stands for an image row and cannot continue as text; sample (temperature > 0) or ban it with logitBias');
        }
        tokens.push(tok);
        const { emit, stopped } = stopper.push(decoder.push(tok));
        // Before the yield: a consumer that stops at this piece still leaves the cache trimmed.
        if (stopped) stopReason = 'stop';
        if (emit) {
          text += emit;
          options.onToken?.(emit, tok);
          yield emit;
        }
        if (stopped) break;
        // Positions used if every token but this one has been evaluated.
        if (promptEnd + tokens.length - 1 >= this.ctx.contextSize) {
          stopReason = 'contextFull';
          break;
        }
        if (!run) {
          // maxTokens 1: the answer's token is cached all the same, as at any maxTokens.
          await this.ctx.evaluate([tok], [], { logits: 'last', greedy: true });
          break;
        }
        pending = run.next();
        const next = signal ? await untilAborted(pending, signal, abortNow) : await pending;
        pending = undefined;
        if (next.done) {
          // The embedding module's cache can fill first (a small embeddingContextSize);
          // evaluate() refuses the step then.
          if (run.end === 'contextFull') throw new HovleError('CONTEXT_FULL', "the embedding module's cache is full");
          throw new HovleError('INTERNAL', `the decode run ended (${run.end}) before the answer did`);
        }
        // At maxTokens this last pick is taken only so that the token before it stays cached.
        if (tokens.length >= maxTokens) break;
        tok = next.value;
      }
    } finally {
      if (run && abortedOut) {
        const waited = pending?.catch(() => undefined) ?? Promise.resolve();
        this.closing = { done: waited.then(() => run.return()), cached: promptEnd + tokens.length };
      } else {
        await run?.return();
      }
      // Also when the consumer stopped at the last piece. A session disposed meanwhile has no
      // cache left to trim.
      if (stopReason === 'stop' && !this.disposed) await this.keepEmittedText(promptEnd, tokens, text);
    }
    if (stopReason !== 'stop') {
      const { emit, stopped } = stopper.finish(decoder.flush());
      if (stopped) {
        stopReason = 'stop';
        await this.keepEmittedText(promptEnd, tokens, text + emit);
      }
      if (emit) {
        text += emit;
        options.onToken?.(emit, tokens.at(-1)!);
        yield emit;
      }
    }
    const decodeMs = performance.now() - t2;
    return {
      text,
      tokens,
      stopReason,
      images: imageInfo,
      stats: {
        preprocessMs,
        promptTokens: ids.length,
        prefillMs,
        prefillTokensPerSecond: ids.length / (prefillMs / 1000),
        generatedTokens: tokens.length,
        decodeMs,
        decodeTokensPerSecond: tokens.length > 1 ? (tokens.length - 1) / ((performance.now() - firstTokenAt) / 1000) : 0,
        timeToFirstTokenMs: firstTokenAt - t0,
      },
    };
  }

  /**
   * This answer's sampler. Sampling never draws the image-context id: it stands for an image row
   * and cannot be evaluated as text, so a logitBias cannot favour it (a negative one is a ban).
   * Greedy decoding keeps its device pick; a trained model does not emit that id.
   */
  private samplerFor(options: SamplingOptions): Sampler {
    const V = this.model.hparams.vocabSize;
    const imageId = this.model.vocab.imageContextId;
    validateAnswerSampling(this.model, options);
    const plain = new Sampler(options, V);
    if (plain.greedy) return plain;
    return new Sampler({ ...options, logitBias: { ...options.logitBias, [imageId]: -Infinity } }, V);
  }

  dispose(): void {
    this.disposed = true;
    this.ctx.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/**
 * `p`, or the error of `abort()` if `signal` aborts first (`p` then settles unobserved). An abort
 * after `p` has settled is not this wait's: `abort()` is not called for it.
 */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal, abort: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(abort());
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      reject(abort());
    };
    const settle = () => {
      settled = true;
      signal.removeEventListener('abort', onAbort);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => {
      settle();
      resolve(v);
    }, (e: unknown) => {
      settle();
      reject(e);
    });
  });
}
