// An independent float64 implementation of native/reference_graph.cpp's graph, used to prove
// that the CPU backend computes what the graph says (rms_norm, NeoX rope, scaled soft_max...).
// Inputs are regenerated with the same xorshift32 generator and draw order as the C++ code.

export const EMBD = 64;
export const HEAD_DIM = 16;
export const HEADS = 6;
export const OUT = HEAD_DIM * HEADS;
export const TOKENS = 7;

function rng(seed: number): () => number {
  let state = (Math.imul(seed | 0, 2654435761 | 0) + 1) >>> 0;
  return () => {
    let s = state;
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    state = s;
    return (s >>> 8) / 8388608 - 1;
  };
}

/** Output [TOKENS][OUT], row-major, for f32 weights. */
export function referenceGraph(seed: number): Float64Array {
  const next = rng(seed);
  const w = Array.from({ length: EMBD * OUT }, () => next() * 0.125);
  const g = Array.from({ length: OUT }, () => Math.fround(1 + Math.fround(Math.fround(0.1) * next())));
  const x = Array.from({ length: EMBD * TOKENS }, () => next());
  const out = new Float64Array(TOKENS * OUT);
  for (let t = 0; t < TOKENS; t++) {
    const y = new Float64Array(OUT);
    for (let o = 0; o < OUT; o++) {
      let acc = 0;
      for (let k = 0; k < EMBD; k++) acc += w[o * EMBD + k]! * x[t * EMBD + k]!;
      y[o] = acc;
    }
    let ms = 0;
    for (let o = 0; o < OUT; o++) ms += y[o]! * y[o]!;
    const inv = 1 / Math.sqrt(ms / OUT + 1e-5);
    const n = y.map((v, o) => v * inv * g[o]!);
    const pos = 3 * t + 1;
    const r = new Float64Array(OUT);
    const half = HEAD_DIM / 2;
    for (let h = 0; h < HEADS; h++) {
      for (let i = 0; i < half; i++) {
        const theta = pos * Math.pow(10000, (-2 * i) / HEAD_DIM);
        const a = n[h * HEAD_DIM + i]!;
        const b = n[h * HEAD_DIM + i + half]!;
        r[h * HEAD_DIM + i] = a * Math.cos(theta) - b * Math.sin(theta);
        r[h * HEAD_DIM + i + half] = a * Math.sin(theta) + b * Math.cos(theta);
      }
    }
    let max = -Infinity;
    for (let o = 0; o < OUT; o++) max = Math.max(max, 0.25 * r[o]!);
    let sum = 0;
    const e = r.map((v) => Math.exp(0.25 * v - max));
    for (let o = 0; o < OUT; o++) sum += e[o]!;
    for (let o = 0; o < OUT; o++) out[t * OUT + o] = e[o]! / sum + y[o]!;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
