// Token sampling: the options, their validation, and a seeded sampler over rows of logits. The
// arithmetic lives in native/sampler.cpp, the one implementation, which a decode run also uses
// on the model's thread; this class validates on the JS thread and holds the native handle.
import { HovleError } from '../errors.js';
import type { NativeSampler, NativeSamplingParams } from '../native/addon.js';
import { loadAddon } from '../native/load.js';

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Only the K most likely tokens (0, the default: all). */
  topK?: number;
  /** Only the most likely tokens whose probabilities sum to at least P (1, the default: all). */
  topP?: number;
  /** Only tokens at least this fraction as likely as the most likely one (0, the default: all). */
  minP?: number;
  /** Multiplicative penalty (llama.cpp style) on tokens seen in the last `penaltyWindow` tokens. */
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** How many of the latest tokens the penalties look at (default 64; 0: none). */
  penaltyWindow?: number;
  /** Added to the logits of these token ids (-Infinity bans a token). */
  logitBias?: Record<number, number>;
  /** Same seed and inputs, same tokens. Default: a random seed. */
  seed?: number;
}

/**
 * Throws INVALID_ARGUMENT, with `param` naming the option, for options a Sampler would refuse.
 * Given the vocabulary size, a logitBias for a token id outside it is refused too (as OpenAI
 * does: a mistake, not a no-op).
 */
export function validateSampling(o: SamplingOptions, vocabSize?: number): void {
  const bad = (param: keyof SamplingOptions, message: string) => new HovleError('INVALID_ARGUMENT', message, { param });
  const num = (v: unknown, name: keyof SamplingOptions, lo: number, hi = Infinity) => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !(v >= lo && v <= hi)) throw bad(name, `${name} must be a number in [${lo}, ${hi}]`);
  };
  const int = (v: unknown, name: keyof SamplingOptions) => {
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 0)) throw bad(name, `${name} must be a non-negative integer`);
  };
  num(o.temperature, 'temperature', 0);
  num(o.topP, 'topP', 0, 1);
  num(o.minP, 'minP', 0, 1);
  num(o.presencePenalty, 'presencePenalty', -2, 2);
  num(o.frequencyPenalty, 'frequencyPenalty', -2, 2);
  if (o.repeatPenalty !== undefined && !(typeof o.repeatPenalty === 'number' && o.repeatPenalty > 0 && Number.isFinite(o.repeatPenalty))) {
    throw bad('repeatPenalty', 'repeatPenalty must be a finite number > 0');
  }
  int(o.topK, 'topK');
  int(o.penaltyWindow, 'penaltyWindow');
  int(o.seed, 'seed');
  if (o.seed !== undefined && o.seed > Number.MAX_SAFE_INTEGER) throw bad('seed', 'seed must be at most Number.MAX_SAFE_INTEGER');
  if (o.topK !== undefined && o.topK > 2 ** 31 - 1) throw bad('topK', 'topK must be below 2^31');
  if (o.penaltyWindow !== undefined && o.penaltyWindow > 2 ** 31 - 1) throw bad('penaltyWindow', 'penaltyWindow must be below 2^31');
  if (o.logitBias !== undefined) {
    if (typeof o.logitBias !== 'object' || o.logitBias === null || Array.isArray(o.logitBias)) {
      throw bad('logitBias', 'logitBias must be an object of token id -> bias');
    }
    for (const [id, b] of Object.entries(o.logitBias)) {
      if (!/^(0|[1-9][0-9]*)$/.test(id)) throw bad('logitBias', `logitBias key "${id}" is not a token id`);
      if (typeof b !== 'number' || !(Number.isFinite(b) || b === -Infinity)) {
        throw bad('logitBias', `logitBias[${id}] must be a finite number or -Infinity`);
      }
      if (vocabSize !== undefined && Number(id) >= vocabSize) throw bad('logitBias', `logitBias: token ${id} is outside the vocabulary (0..${vocabSize - 1})`);
    }
  }
}

/**
 * A seeded sampler over rows of logits: bias, penalties, temperature, top-k, min-p, top-p, then
 * a draw (mulberry32). Deterministic: the same seed, logits and history give the same tokens.
 * NaN logits are never drawn; a logit that overflows to +Infinity takes all the probability.
 * A decode run given this sampler continues its stream from the state the sampler has when the
 * run starts (after the context's calls queued before it); each pick the consumer takes then
 * sets `state` as if the sampler had drawn it here. Do not sample with it meanwhile.
 */
export class Sampler {
  private readonly handle: NativeSampler;

  constructor(options: SamplingOptions, readonly vocabSize: number) {
    if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new HovleError('INVALID_ARGUMENT', 'vocabSize must be a positive integer');
    validateSampling(options, vocabSize);
    const bias = Object.entries(options.logitBias ?? {});
    const params: NativeSamplingParams = {
      ...pick(options, ['temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'presencePenalty', 'frequencyPenalty', 'penaltyWindow']),
      ...(bias.length ? { biasIds: Int32Array.from(bias, ([id]) => Number(id)), biasValues: Float64Array.from(bias, ([, b]) => b) } : {}),
    };
    const state = seedState(options.seed ?? Math.floor(Math.random() * 2 ** 32));
    this.handle = new (loadAddon().addon.Sampler)(params, vocabSize, state);
  }

  /**
   * True when sample() is the plain argmax of the logits (temperature 0, no bias, no penalty):
   * the pick can then be taken on the device (evaluate's `greedy`) without the logits.
   */
  get greedy(): boolean {
    return this.handle.greedy;
  }

  /** The next token for one row of logits; `history` is the text the penalties look back on. */
  sample(logits: Float32Array, history: ArrayLike<number> = []): number {
    return this.handle.sample(logits, history instanceof Int32Array ? history : Int32Array.from(history));
  }

  /** The generator's state: save and restore it to replay a stream. */
  get state(): number {
    return this.handle.state;
  }

  set state(s: number) {
    this.handle.state = s;
  }

  /** @internal The native sampler, for a decode run to copy. */
  get native(): NativeSampler {
    return this.handle;
  }
}

/** murmur3's finalizer: a bijection of 32-bit values that spreads every input bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The generator's first state for a seed (a non-negative safe integer). Every bit counts: seeds
 * that differ above bit 32 (0 and 2^32, say) give different streams, and no two seeds below 2^32
 * share a state. @internal
 */
export function seedState(seed: number): number {
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  return fmix32((seed >>> 0) ^ fmix32(high ^ 0x9e3779b9));
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const r: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) r[k] = o[k];
  return r;
}
