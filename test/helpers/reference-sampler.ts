// The sampler as it was written in TypeScript before sampling moved to native/sampler.cpp
// (src/session/sampler.ts at b4c8990), kept as the reference the native one must reproduce: the
// same token for the same seed, logits and history. It sorts the whole vocabulary per token,
// which is why it is no longer the implementation. One change: penaltyWindow 0 means no
// penalties (the old code's slice(-0) took the whole history); the tests use windows >= 1.
import { seedState, type SamplingOptions } from '../../src/runtime/sampler.js';

export class ReferenceSampler {
  private state: number;

  constructor(private readonly o: SamplingOptions) {
    this.state = seedState(o.seed ?? 1);
  }

  private random(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  sample(logits: Float32Array, history: readonly number[]): number {
    const o = this.o;
    const l = Float32Array.from(logits);
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
    if (temperature === 0) {
      let best = 0;
      for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
      return best;
    }
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
