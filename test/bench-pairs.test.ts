// The statistics of bench/pairs.mjs, which decide whether a set of interleaved decode pairs
// resolves a difference from llama.cpp. Hand-made speeds; no model runs here.
import { describe, expect, it } from 'vitest';

// @ts-expect-error: a plain .mjs script module without type declarations
import { formatPairStats, pairStats, t975 } from '../bench/pairs.mjs';

/** Pairs whose ratios ours / llama.cpp are `ratios` (llama.cpp at 10 tok/s). */
const pairsOf = (...ratios: number[]) => ratios.map((r) => ({ hovle: 10 * r, llama: 10 }));

describe('decode pair statistics', () => {
  it('a t interval on the log ratios: exp(mean +- t * sd / sqrt(n))', () => {
    const s = pairStats(pairsOf(Math.exp(-0.1), 1, Math.exp(0.1)));
    expect(s.n).toBe(3);
    expect(s.geomean).toBeCloseTo(1, 12);
    // sd of (-0.1, 0, 0.1) is 0.1; t(0.975, 2) = 4.303.
    const half = (4.303 * 0.1) / Math.sqrt(3);
    expect(s.ci95[0]).toBeCloseTo(Math.exp(-half), 12);
    expect(s.ci95[1]).toBeCloseTo(Math.exp(half), 12);
    expect(s.verdict).toBe('unresolved');
  });

  it('says faster or slower only when the interval leaves 1 out', () => {
    const tight = [1.04, 1.05, 1.06, 1.05, 1.04, 1.06, 1.05, 1.05];
    expect(pairStats(pairsOf(...tight)).verdict).toBe('faster');
    expect(pairStats(pairsOf(...tight.map((r) => 1 / r))).verdict).toBe('slower');
    // The same mean spread wide: +-15% per pair over 8 pairs does not resolve 5%.
    const wide = [0.9, 1.2, 0.92, 1.2, 1.05, 0.95, 1.18, 1.05];
    const s = pairStats(pairsOf(...wide));
    expect(s.geomean).toBeGreaterThan(1.03);
    expect(s.ci95[0]).toBeLessThan(1);
    expect(s.verdict).toBe('unresolved');
    // One pair, or identical ratios.
    expect(pairStats(pairsOf(1.2))).toMatchObject({ n: 1, verdict: 'unresolved', median: 1.2 });
    expect(pairStats(pairsOf(1.2))!.ci95).toBeUndefined();
    expect(pairStats(pairsOf(0.95, 0.95))).toMatchObject({ verdict: 'slower', ci95: [0.95, 0.95] });
    expect(pairStats([])).toBeUndefined();
  });

  it('mirrors: swapping the sides inverts the interval, the median and the range', () => {
    const r = [0.83, 0.92, 0.95, 0.98, 1.0, 1.01, 1.01, 1.01];
    const a = pairStats(pairsOf(...r));
    const b = pairStats(r.map((x) => ({ hovle: 10, llama: 10 * x })));
    expect(b.geomean).toBeCloseTo(1 / a.geomean, 12);
    expect(b.ci95[0]).toBeCloseTo(1 / a.ci95[1], 12);
    expect(b.ci95[1]).toBeCloseTo(1 / a.ci95[0], 12);
    expect(b.median).toBeCloseTo(1 / a.median, 12);
    expect(b.min).toBeCloseTo(1 / a.max, 12);
    // An even count's median is the geometric mean of the middle two.
    expect(a.median).toBeCloseTo(Math.sqrt(0.98 * 1.0), 12);
  });

  it("Student's t at 97.5%: the table, then a series close to it", () => {
    expect(t975(1)).toBe(12.706);
    expect(t975(30)).toBe(2.042);
    // Reference values: 2.0395 (31), 2.0211 (40), 2.0003 (60), 1.9799 (120).
    for (const [df, t] of [[31, 2.0395], [40, 2.0211], [60, 2.0003], [120, 1.9799]] as const) expect(Math.abs(t975(df) - t)).toBeLessThan(0.001);
  });

  it('formats one line', () => {
    expect(formatPairStats(pairStats(pairsOf(0.9, 1.0, 1.1)))).toMatch(/^1\.00 \(0\.90-1\.10\) over 3 pairs; geomean 1\.00, 95% CI 0\.\d\d-1\.\d\d$/);
    expect(formatPairStats(pairStats(pairsOf(1.2)))).toBe('1.20 over 1 pair');
    expect(formatPairStats(undefined)).toBe('-');
  });
});
