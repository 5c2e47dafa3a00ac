// Token sampling over one row of logits: bias, penalties, temperature, top-k, top-p, min-p,
// then a draw from a seeded generator (same seed and inputs, same tokens). temperature 0 is
// greedy.
import { HovleError } from '../errors.js';
import { argmax } from '../runtime/argmax.js';

export { argmax };

export interface SamplingOptions {
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** Multiplicative penalty (llama.cpp style) on tokens seen in the last `penaltyWindow` tokens. */
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  penaltyWindow?: number;
  /** Added to the logits of these token ids (-Infinity bans a token). */
  logitBias?: Record<number, number>;
  seed?: number;
}

export function validateSampling(o: SamplingOptions): void {
  const num = (v: unknown, name: string, lo: number, hi = Infinity) => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !(v >= lo && v <= hi)) throw new HovleError('INVALID_ARGUMENT', `${name} must be a number in [${lo}, ${hi}]`);
  };
  num(o.temperature, 'temperature', 0);
  num(o.topP, 'topP', 0, 1);
  num(o.minP, 'minP', 0, 1);
  num(o.repeatPenalty, 'repeatPenalty', 0);
  num(o.presencePenalty, 'presencePenalty', -2, 2);
  num(o.frequencyPenalty, 'frequencyPenalty', -2, 2);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw new HovleError('INVALID_ARGUMENT', 'topK must be a non-negative integer');
  if (o.seed !== undefined && (!Number.isInteger(o.seed) || o.seed < 0)) throw new HovleError('INVALID_ARGUMENT', 'seed must be a non-negative integer');
}

export class Sampler {
  private state: number;

  constructor(private readonly o: SamplingOptions) {
    validateSampling(o);
    this.state = ((o.seed ?? Math.floor(Math.random() * 2 ** 31)) ^ 0x9e3779b9) >>> 0 || 1;
  }

  private scratch = new Float32Array(0);

  /**
   * True when sample() is the plain argmax of the logits (temperature 0, no bias, no penalty):
   * the pick can then be taken on the device (evaluate's `greedy`) without the logits.
   */
  get greedy(): boolean {
    const o = this.o;
    return (o.temperature ?? 0) === 0 && Object.keys(o.logitBias ?? {}).length === 0 &&
      (o.repeatPenalty === undefined || o.repeatPenalty === 1) && !o.presencePenalty && !o.frequencyPenalty;
  }

  /** mulberry32: small, fast, and the same on every platform. */
  private random(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  sample(logits: Float32Array, history: readonly number[]): number {
    const o = this.o;
    // A scratch copy (biases and penalties are applied to it), reused across tokens.
    if (this.scratch.length !== logits.length) this.scratch = new Float32Array(logits.length);
    const l = this.scratch;
    l.set(logits);
    if (o.logitBias) for (const [id, b] of Object.entries(o.logitBias)) if (Number(id) < l.length) l[Number(id)]! += b;
    const window = history.slice(-(o.penaltyWindow ?? 64));
    if (window.length && (o.repeatPenalty !== undefined || o.presencePenalty || o.frequencyPenalty)) {
      const counts = new Map<number, number>();
      for (const t of window) counts.set(t, (counts.get(t) ?? 0) + 1);
      for (const [t, n] of counts) {
        if (o.repeatPenalty !== undefined && o.repeatPenalty !== 1) l[t] = l[t]! > 0 ? l[t]! / o.repeatPenalty : l[t]! * o.repeatPenalty;
        l[t]! -= (o.presencePenalty ?? 0) + n * (o.frequencyPenalty ?? 0);
      }
    }
    const temperature = o.temperature ?? 0;
    if (temperature === 0) return argmax(l);
    let idx = Array.from(l.keys()).filter((i) => l[i] !== -Infinity);
    idx.sort((a, b) => l[b]! - l[a]!);
    if (o.topK) idx = idx.slice(0, o.topK);
    const max = l[idx[0]!]!;
    let p = idx.map((i) => Math.exp((l[i]! - max) / temperature));
    let sum = p.reduce((a, b) => a + b, 0);
    p = p.map((x) => x / sum);
    if (o.minP) {
      const keep = p.findIndex((x) => x < o.minP! * p[0]!);
      if (keep > 0) {
        idx = idx.slice(0, keep);
        p = p.slice(0, keep);
      }
    }
    if (o.topP !== undefined && o.topP < 1) {
      let acc = 0;
      let n = 0;
      while (n < p.length && acc < o.topP) acc += p[n++]!;
      idx = idx.slice(0, Math.max(1, n));
      p = p.slice(0, Math.max(1, n));
    }
    sum = p.reduce((a, b) => a + b, 0);
    let r = this.random() * sum;
    for (let i = 0; i < p.length; i++) {
      r -= p[i]!;
      if (r <= 0) return idx[i]!;
    }
    return idx[idx.length - 1]!;
  }
}
