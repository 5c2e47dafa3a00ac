// The token sampler (native/sampler.cpp through src/runtime/sampler.ts) against the TypeScript
// sampler it replaced (test/helpers/reference-sampler.ts): the same tokens from the same seed,
// logits and history over every option on continuous logits; exact cuts where that one rounded
// (equal weights); a distribution that matches the softmax; overflowed and NaN logits; typed
// errors for bad options and inputs.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { defaultAddonPath } from '../src/native/load.js';
import { Sampler, type SamplingOptions } from '../src/runtime/sampler.js';
import { ReferenceSampler } from './helpers/reference-sampler.js';

/** Seeded xorshift: reproducible logits without Math.random. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** Logits shaped like a language model's: a few strong tokens over a long tail. */
function logitRow(V: number, rand: () => number, spread = 4): Float32Array {
  const l = new Float32Array(V);
  for (let i = 0; i < V; i++) l[i] = (rand() * 2 - 1) * spread;
  for (let k = 0; k < 8; k++) l[Math.floor(rand() * V)] = spread * (2 + rand() * 2);
  return l;
}

const SETTINGS: SamplingOptions[] = [
  { temperature: 1 },
  { temperature: 0.7, topK: 40 },
  { temperature: 0.8, topP: 0.9 },
  { temperature: 1.3, minP: 0.05 },
  { temperature: 0.8, topK: 50, topP: 0.95, minP: 0.01, repeatPenalty: 1.1 },
  { temperature: 1, presencePenalty: 0.5, frequencyPenalty: 0.3, penaltyWindow: 8 },
  { temperature: 2, topP: 0.5, logitBias: { 3: 5, 4: -Infinity, 10: -2.5 } },
  { temperature: 0.01 },
  { temperature: 0, repeatPenalty: 1.3, logitBias: { 7: 1.5 } },
  { temperature: 5, topK: 3 },
  { temperature: 1, topP: 0 },
];

describe('Sampler', () => {
  it('every bit of the seed counts: no two seeds share a stream', () => {
    // Seeds used to be folded to 32 bits and mixed so that 0 and 2^32 (and 0x9e3779b9 and
    // 0x9e3779b8) gave the same tokens.
    const row = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    const draws = (seed: number) => {
      const s = new Sampler({ temperature: 5, seed }, row.length);
      return Array.from({ length: 16 }, () => s.sample(row)).join();
    };
    for (const [a, b] of [[0, 2 ** 32], [5, 2 ** 32 + 5], [0x9e3779b9, 0x9e3779b8], [1, 2 ** 53 - 1]]) expect(draws(a!)).not.toBe(draws(b!));
    expect(draws(7)).toBe(draws(7));
    expect(() => new Sampler({ seed: 2 ** 53 }, 10)).toThrow(/seed/);
  });

  it('draws the same tokens as the reference sampler, token after token, for every option', () => {
    for (const V of [500, 92553]) {
      // The reference sorts the whole vocabulary per token (~50 ms at 92553): few steps there.
      const steps = V > 1000 ? 4 : 150;
      for (const [k, base] of SETTINGS.entries()) {
        for (const seed of V > 1000 ? [7] : [1, 42, 2 ** 31 + 5]) {
          const o = { ...base, seed };
          const native = new Sampler(o, V);
          const ref = new ReferenceSampler(o);
          const rand = rng(seed * 31 + k + V);
          const history: number[] = [];
          for (let t = 0; t < steps; t++) {
            const l = logitRow(V, rand, t % 3 === 0 ? 1 : 6);
            const want = ref.sample(l, history);
            expect(native.sample(l, history), `V ${V}, ${JSON.stringify(o)}, token ${t}`).toBe(want);
            history.push(want);
          }
        }
      }
    }
  });

  it('samples from the softmax of logits / temperature', () => {
    const l = Float32Array.from([0, 1, 2, 3, -Infinity, 1]);
    const s = new Sampler({ temperature: 1.5, seed: 9 }, l.length);
    const n = 60000;
    const counts = new Array<number>(l.length).fill(0);
    for (let i = 0; i < n; i++) counts[s.sample(l)]!++;
    const w = Array.from(l, (x) => Math.exp(x / 1.5));
    const z = w.reduce((a, b) => a + b, 0);
    for (let i = 0; i < l.length; i++) expect(Math.abs(counts[i]! / n - w[i]! / z)).toBeLessThan(0.01);
    expect(counts[4]).toBe(0);
  });

  it('cuts exactly on boundaries: equal weights, top-p at a multiple of them, min-p 1, top-k among ties', () => {
    // Where the reference's running sum of normalized probabilities rounds (10 x 0.1 < 0.8 after
    // 8), the native sampler compares unnormalized sums: exactly 8 tokens make 0.8.
    const draws = (o: SamplingOptions, l: Float32Array, n = 3000) => {
      const s = new Sampler({ seed: 1, ...o }, l.length);
      const seen = new Map<number, number>();
      for (let i = 0; i < n; i++) {
        const t = s.sample(l);
        seen.set(t, (seen.get(t) ?? 0) + 1);
      }
      return [...seen.keys()].sort((a, b) => a - b);
    };
    const flat = new Float32Array(10).fill(0.5);
    expect(draws({ temperature: 1, topP: 0.8 }, flat)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(draws({ temperature: 1, topP: 0 }, flat)).toEqual([0]);
    expect(draws({ temperature: 1, topK: 3 }, flat)).toEqual([0, 1, 2]);
    const l = Float32Array.from([3, -1, 2, 2, 0, 5]);
    // temperature Infinity: every weight is 1, so min-p 1 keeps them all, and top-k ranks by logit.
    expect(draws({ temperature: Infinity, minP: 1 }, l)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(draws({ temperature: Infinity, topK: 3 }, l)).toEqual([0, 2, 5]);
    expect(draws({ temperature: Infinity, topK: 3, topP: 0.5 }, l)).toEqual([0, 5]);
    // A tiny temperature: every weight but the top one's underflows to 0.
    expect(draws({ temperature: 1e-30 }, l)).toEqual([5]);
  });

  it('a logit that overflows to +Infinity takes all the probability; NaN is never picked', () => {
    const l = Float32Array.from([0, 1, Infinity, 2, Infinity, 0]);
    const s = new Sampler({ temperature: 1, seed: 2 }, l.length);
    const seen = new Set(Array.from({ length: 400 }, () => s.sample(l)));
    expect([...seen].sort()).toEqual([2, 4]);
    // A finite bias past float32's range, and a vanishing repeat penalty, overflow the same way.
    const row = Float32Array.from([0, 1, 2, 3, 4]);
    expect(new Sampler({ temperature: 1, logitBias: { 1: 1e39 }, seed: 3 }, 5).sample(row)).toBe(1);
    expect(new Sampler({ temperature: 0.5, repeatPenalty: 1e-38, seed: 3 }, 5).sample(row, [2])).toBe(2);
    // Greedy: the first largest logit that is a number, wherever a NaN sits.
    const nan = Float32Array.from([Number.NaN, 1, 3, Number.NaN, 3]);
    expect(new Sampler({ temperature: 0, logitBias: { 1: 0.5 } }, 5).sample(nan)).toBe(2);
    expect(new Sampler({ temperature: 0.7, seed: 4 }, 5).sample(Float32Array.from([Number.NaN, Number.NaN, 1, Number.NaN, Number.NaN]))).toBe(2);
  });

  it('state: saving and restoring it replays the stream; seeds give other streams', () => {
    const V = 1000;
    const l = logitRow(V, rng(5), 1);
    const s = new Sampler({ temperature: 1, seed: 3 }, V);
    const saved = s.state;
    const a = Array.from({ length: 20 }, () => s.sample(l));
    s.state = saved;
    expect(Array.from({ length: 20 }, () => s.sample(l))).toEqual(a);
    const other = new Sampler({ temperature: 1, seed: 4 }, V);
    expect(Array.from({ length: 20 }, () => other.sample(l))).not.toEqual(a);
    expect(() => (s.state = -1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('greedy: only when the pick is the plain argmax', () => {
    const V = 100;
    expect(new Sampler({}, V).greedy).toBe(true);
    expect(new Sampler({ temperature: 0, repeatPenalty: 1, presencePenalty: 0, logitBias: {} }, V).greedy).toBe(true);
    expect(new Sampler({ temperature: 0.5 }, V).greedy).toBe(false);
    expect(new Sampler({ repeatPenalty: 1.1 }, V).greedy).toBe(false);
    expect(new Sampler({ frequencyPenalty: 0.2 }, V).greedy).toBe(false);
    expect(new Sampler({ logitBias: { 7: -Infinity } }, V).greedy).toBe(false);
  });

  it('penaltyWindow 0 turns the penalties off; the window counts the latest tokens only', () => {
    const l = Float32Array.from([2, 1.9, 0]);
    expect(new Sampler({ repeatPenalty: 2, penaltyWindow: 0 }, 3).sample(l, [0, 0])).toBe(0);
    expect(new Sampler({ repeatPenalty: 2, penaltyWindow: 1 }, 3).sample(l, [0])).toBe(1);
    expect(new Sampler({ repeatPenalty: 2, penaltyWindow: 1 }, 3).sample(l, [0, 2])).toBe(0);
  });

  it('refuses bad options and inputs with INVALID_ARGUMENT, leaving the process healthy', () => {
    const bad: Array<[SamplingOptions, number?]> = [
      [{ temperature: -1 }], [{ temperature: Number.NaN }], [{ topK: 1.5 }], [{ topK: -1 }], [{ topP: 1.1 }],
      [{ minP: -0.1 }], [{ repeatPenalty: 0 }], [{ repeatPenalty: Infinity }], [{ presencePenalty: 3 }],
      [{ penaltyWindow: -1 }], [{ penaltyWindow: 2.5 }], [{ seed: -1 }], [{ seed: 0.5 }],
      [{ logitBias: { 5: Number.NaN } }], [{ logitBias: { 5: Infinity } }], [{ logitBias: { x: 1 } as never }],
      [{ logitBias: { '-1': 1 } }], [{ logitBias: { 100: 1 } }, 100], [{ logitBias: [] as never }],
    ];
    for (const [o, V = 1000] of bad) {
      // `param` names the option at fault (the server reports it as OpenAI's snake_case param).
      const param = Object.keys(o)[0];
      expect(() => new Sampler(o, V), JSON.stringify(o)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', param }));
    }
    expect(() => new Sampler({}, 0)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const s = new Sampler({ temperature: 1, seed: 1 }, 10);
    expect(() => s.sample(new Float32Array(9))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => s.sample(new Float64Array(10) as never)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    // Every token banned: nothing to draw, at any temperature.
    const all = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [i, -Infinity]));
    for (const temperature of [0, 1]) {
      expect(() => new Sampler({ temperature, logitBias: all }, 10).sample(new Float32Array(10))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    // NaN logits are never drawn; the rest still are.
    const l = Float32Array.from([Number.NaN, 1, Number.NaN, 0, ...new Array<number>(6).fill(-Infinity)]);
    for (let i = 0; i < 50; i++) expect([1, 3]).toContain(s.sample(l));
  });

  // A C++ exception other than Napi::Error leaving a binding used to terminate the process
  // (std::bad_alloc here: 2^31 - 1 floats of logits under a 4 GiB address-space limit).
  // native/errors.h RethrowAsJs makes it a typed error. In a child process, for the ulimit;
  // Linux only (ulimit -v), and not under the ASan build, whose shadow memory needs far more
  // address space.
  it.skipIf(process.platform !== 'linux' || /asan/.test(process.env.LD_PRELOAD ?? ''))('a sampler too large for memory is OUT_OF_MEMORY, not a crash', () => {
    const script = `
      const a = require(${JSON.stringify(defaultAddonPath())});
      let code = 'none';
      try { new a.Sampler({ temperature: 1 }, 2 ** 31 - 1, 1); } catch (e) { code = e.code; }
      new a.Sampler({ temperature: 1 }, 10, 1).sample(new Float32Array(10), new Int32Array(0));
      console.log(code);`;
    const r = spawnSync('bash', ['-c', 'ulimit -v 4194304 && exec "$0" -e "$1"', process.execPath, script], { encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/terminate called/);
    expect({ status: r.status, signal: r.signal, out: r.stdout.trim() }).toEqual({ status: 0, signal: null, out: 'OUT_OF_MEMORY' });
  });
});
