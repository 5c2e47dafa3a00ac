// The arithmetic of bench/run.mjs's rounds (bench/rounds.mjs): speeds pool every round's
// samples, ratios are per round. Hand-made results; no model runs here.
import { describe, expect, it } from 'vitest';

import { spread } from '../src/bench/measure.js';
// @ts-expect-error: a plain .mjs script module without type declarations
import { combineRounds } from '../bench/rounds.mjs';

const s = (...v: number[]) => spread(v);

/** A `hovle bench --json` result with the fields combineRounds reads. */
function oursRound(prefill: number, decode0: number, image: number) {
  return {
    loadFirstMs: 900,
    loadWarmMs: s(300),
    imageFrontEndMs: { '1': s(150), '7': s(1000) },
    imagePrefill: { '1': { tokens: 300, tokensPerSecond: s(image), frontEndShare: s(0.02) } },
    prefillTokensPerSecond: { '2048': s(prefill, prefill + 2) },
    decodeTokensPerSecond: { '0': s(decode0) },
    timeToFirstTokenMs: s(12000),
  };
}

const opts = { prompts: [2048], depths: [0], spread };

describe('bench rounds', () => {
  it('takes each ratio per round, so a machine that slowed down between rounds does not skew it', () => {
    // Round 2 ran on a machine twice as slow, for both sides: every per-round ratio is 1.1.
    const ours = [oursRound(22, 11, 33), oursRound(11, 5.5, 16.5)];
    const peer = [
      { prefill: { 300: [30], 2048: [21] }, decode: { 0: [10] } },
      { prefill: { 300: [15], 2048: [10.5] }, decode: { 0: [5] } },
    ];
    const { hovle, llama } = combineRounds(ours, peer, opts);
    expect(llama.ratios.decode['0'].median).toBeCloseTo(1.1, 10);
    expect(llama.ratios.decode['0'].runs).toBe(2);
    expect(llama.ratios.image300.median).toBeCloseTo(1.1, 10);
    // Ours: medians 23 and 12 of (22, 24) and (11, 13) against 21 and 10.5.
    expect(llama.ratios.prefill['2048'].samples).toEqual([12 / 10.5, 23 / 21].sort((a, b) => a - b));
    // The speeds pool all samples: of pooled medians the ratio would be 17.5 / 15.75.
    expect(hovle.prefillTokensPerSecond['2048']).toMatchObject({ runs: 4, min: 11, max: 24, median: 17.5 });
    expect(llama.prefill['2048']).toMatchObject({ runs: 2, median: 15.75 });
    expect(hovle.rounds).toBe(2);
    expect(hovle.loadFirstMs).toBe(900);
  });

  it('leaves out a round that llama.cpp did not finish, and has no ratios without it', () => {
    const ours = [oursRound(20, 10, 30), oursRound(10, 5, 15)];
    const one = combineRounds(ours, [{ prefill: { 300: [30], 2048: [20] }, decode: { 0: [10] } }], opts);
    expect(one.llama.ratios.decode['0']).toMatchObject({ runs: 1, median: 1 });
    expect(one.hovle.decodeTokensPerSecond['0'].runs).toBe(2);
    expect(combineRounds(ours, [], opts).llama).toBeNull();
    expect(() => combineRounds([], [], opts)).toThrow(/no rounds/);
  });
});
