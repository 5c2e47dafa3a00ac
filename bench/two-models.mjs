#!/usr/bin/env node
// Decode speed of one model while a second model is loaded in the same process: alone, after
// the second has computed once, and while it decodes too. Why: each model runs on a thread of
// its own, and OpenMP teams per thread made libgomp throttle its barriers once two models had
// computed (native/cpu_compute.h); this shows whether that is back.
//   node bench/two-models.mjs A.gguf B.gguf [--steps 32] [--reps 3] [--threads N]
import { parseArgs } from 'node:util';

import { HovleModel } from '../dist/runtime/model.js';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: { steps: { type: 'string', default: '32' }, reps: { type: 'string', default: '3' }, threads: { type: 'string' } },
});
if (positionals.length !== 2) {
  process.stderr.write('usage: node bench/two-models.mjs A.gguf B.gguf [--steps 32] [--reps 3] [--threads N]\n');
  process.exit(2);
}
const steps = Number(a.steps);
const threads = a.threads ? { threads: Number(a.threads) } : {};
const [first, second] = [await HovleModel.load(positionals[0]), await HovleModel.load(positionals[1])];

/** Tokens/s of `steps` greedy steps after a short prompt, on a fresh context. */
async function decode(m, n = steps) {
  const ctx = await m.createContext({ contextSize: n + 64, ...threads });
  const r = await ctx.evaluate(Array.from({ length: 16 }, (_, i) => (300 + i) % m.hparams.vocabSize), [], { logits: 'last', greedy: true });
  const t0 = performance.now();
  let made = 0;
  for await (const _ of ctx.decode(r.argmax[0], { maxSteps: n })) made++;
  const tps = made / ((performance.now() - t0) / 1000);
  ctx.dispose();
  return tps;
}
const med = (x) => [...x].sort((p, q) => p - q)[x.length >> 1];
const rows = [];
const measure = async (label, during) => {
  const runs = [];
  for (let i = 0; i < Number(a.reps); i++) {
    const other = during?.();
    runs.push(await decode(first));
    await other;
  }
  rows.push([label, med(runs).toFixed(2), Math.min(...runs).toFixed(2), Math.max(...runs).toFixed(2)]);
};
await measure('A alone (B loaded, never computed)');
await decode(second, 4);
await measure('A after B computed once');
await measure('A while B decodes', () => decode(second, steps));
console.log(`A: ${positionals[0]}\nB: ${positionals[1]}\n`);
console.log('| | tok/s median | min | max |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
first.dispose();
second.dispose();
