// Pools the rounds of bench/run.mjs for one model type. Speeds pool every sample of every round;
// a ratio ours/llama.cpp is taken per round (the two sides ran minutes apart, on the same
// machine state) and reported as the median (min-max) of those ratios, so a machine that drifts
// between rounds widens the range instead of skewing the figure. Kept apart from run.mjs, which
// spawns processes for minutes, so that test/bench-rounds.test.ts can check the arithmetic.

/**
 * @param {object[]} ours one `hovle bench --json` result per round (BenchResult, Spreads with samples)
 * @param {{prefill: Record<string, number[]>, decode: Record<string, number[]>}[]} peer
 *   llama-bench's tokens/s samples per round, keyed by prompt length and by depth
 * @param {{prompts: number[], depths: number[], spread: (v: number[]) => {median: number}}} opts
 */
export function combineRounds(ours, peer, { prompts, depths, spread }) {
  if (ours.length === 0) throw new Error('combineRounds: no rounds of ours');
  const pool = (get) => spread(ours.flatMap((h) => get(h).samples));
  // The first round's fields stand for the rest (its first load is the cold one).
  const h = structuredClone(ours[0]);
  h.rounds = ours.length;
  h.loadWarmMs = pool((x) => x.loadWarmMs);
  for (const k of Object.keys(h.imageFrontEndMs)) h.imageFrontEndMs[k] = pool((x) => x.imageFrontEndMs[k]);
  for (const k of Object.keys(h.imagePrefill)) {
    h.imagePrefill[k].tokensPerSecond = pool((x) => x.imagePrefill[k].tokensPerSecond);
    h.imagePrefill[k].frontEndShare = pool((x) => x.imagePrefill[k].frontEndShare);
  }
  for (const k of Object.keys(h.prefillTokensPerSecond)) h.prefillTokensPerSecond[k] = pool((x) => x.prefillTokensPerSecond[k]);
  for (const k of Object.keys(h.decodeTokensPerSecond)) h.decodeTokensPerSecond[k] = pool((x) => x.decodeTokensPerSecond[k]);
  h.timeToFirstTokenMs = pool((x) => x.timeToFirstTokenMs);
  if (peer.length === 0) return { hovle: h, llama: null };

  // Round i of ours against round i of llama.cpp; a round one side has not finished is left out.
  const n = Math.min(ours.length, peer.length);
  const perRound = (oursOf, peerOf) =>
    spread(Array.from({ length: n }, (_, i) => spread(oursOf(ours[i]).samples).median / spread(peerOf(peer[i])).median));
  const llama = {
    rounds: peer.length,
    ubatch: peer[0].ubatch,
    prefill: Object.fromEntries([300, ...prompts].map((p) => [p, spread(peer.flatMap((l) => l.prefill[p]))])),
    decode: Object.fromEntries(depths.map((d) => [d, spread(peer.flatMap((l) => l.decode[d]))])),
    ratios: {
      image300: perRound((x) => x.imagePrefill['1'].tokensPerSecond, (l) => l.prefill[300]),
      prefill: Object.fromEntries(prompts.map((p) => [p, perRound((x) => x.prefillTokensPerSecond[p], (l) => l.prefill[p])])),
      decode: Object.fromEntries(depths.map((d) => [d, perRound((x) => x.decodeTokensPerSecond[d], (l) => l.decode[d])])),
    },
  };
  return { hovle: h, llama };
}
