#!/usr/bin/env node
// Decode speed of a whole answer as Session.ask produces it, greedy against sampled: what the
// sampler costs per token on top of the step. The suite (bench/run.mjs) times greedy decoding
// only, as llama-bench does; chat users mostly sample.
//   node bench/sampling-probe.mjs MODEL.gguf [--backend cpu|cuda|vulkan] [--threads N]
//        [--tokens 32] [--reps 3]
// Each repetition asks the same question in a fresh session, once per setting, alternating.
import { parseArgs } from 'node:util';

import { createSession, loadModel } from '../dist/api.js';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    backend: { type: 'string', default: 'cpu' }, threads: { type: 'string' },
    tokens: { type: 'string', default: '32' }, reps: { type: 'string', default: '3' },
  },
});
const SETTINGS = {
  greedy: {},
  'temperature 0.8': { temperature: 0.8, seed: 1 },
  'top-k 40, top-p 0.95, penalty 1.1': { temperature: 0.8, topK: 40, topP: 0.95, repeatPenalty: 1.1, seed: 1 },
};
const model = await loadModel(positionals[0], { backend: a.backend });
const maxTokens = Number(a.tokens);
// A random-weight model's eos logit is as likely as any, so it is banned: every answer then
// runs its full length (greedy with a bias would leave the device pick, so greedy has none).
const noEos = { logitBias: { [model.vocab.eotId]: -Infinity } };
const results = Object.fromEntries(Object.keys(SETTINGS).map((k) => [k, []]));
for (let rep = 0; rep < Number(a.reps); rep++) {
  for (const [name, o] of Object.entries(SETTINGS)) {
    const s = await createSession(model, { contextSize: 1024, ...(a.threads ? { threads: Number(a.threads) } : {}) });
    const r = await s.ask('Describe the picture of a fjord in detail.', { maxTokens, ...o, ...(name === 'greedy' ? {} : noEos) });
    s.dispose();
    results[name].push(r.stats.decodeTokensPerSecond);
    console.error(`rep ${rep + 1} ${name}: ${r.stats.generatedTokens} tokens (${r.stopReason}), ${r.stats.decodeTokensPerSecond.toFixed(2)} tok/s`);
  }
}
const med = (x) => [...x].sort((p, q) => p - q)[x.length >> 1];
console.log(`| setting | decode tok/s median (min-max), ${a.reps} answers of ${maxTokens} tokens |`);
console.log('|---|---|');
for (const [name, x] of Object.entries(results)) {
  console.log(`| ${name} | ${med(x).toFixed(2)} (${Math.min(...x).toFixed(2)}-${Math.max(...x).toFixed(2)}) |`);
}
model.dispose();
