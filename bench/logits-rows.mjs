#!/usr/bin/env node
// Prefill that returns logits at every position (evaluate()'s default, perplexity scoring)
// against one that returns the last row only: time and the context's compute buffers. Rows past
// the few dozen a graph computes go through head graphs (native/context.cpp,
// kLogitRowsPerGraph), so asking for all of them must not grow the buffers.
//   node bench/logits-rows.mjs MODEL.gguf [--backend cpu|cuda|vulkan] [--tokens 512] [--reps 3]
import { parseArgs } from 'node:util';

import { loadModel } from '../dist/api.js';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: { backend: { type: 'string', default: 'cpu' }, tokens: { type: 'string', default: '512' }, reps: { type: 'string', default: '3' } },
});
const n = Number(a.tokens);
const model = await loadModel(positionals[0], { backend: a.backend });
const ids = Array.from({ length: n }, (_, i) => 1000 + ((i * 7919) % 50000));
const MiB = 2 ** 20;
const rows = { last: [], all: [] };
let buffers = '';
for (let rep = 0; rep < Number(a.reps); rep++) {
  for (const which of ['last', 'all']) {
    const ctx = await model.createContext({ contextSize: n + 8 });
    const before = ctx.memory.computeBytes;
    const t0 = performance.now();
    const r = await ctx.evaluate(ids, [], { logits: which });
    rows[which].push(performance.now() - t0);
    if (which === 'all') buffers = `${(before / MiB).toFixed(1)} -> ${(ctx.memory.computeBytes / MiB).toFixed(1)} MiB`;
    if (r.logits.length !== (which === 'all' ? n : 1) * model.hparams.vocabSize) throw new Error('wrong logits length');
    ctx.dispose();
  }
}
const med = (x) => [...x].sort((p, q) => p - q)[x.length >> 1];
const fmt = (x) => `${med(x).toFixed(0)} (${Math.min(...x).toFixed(0)}-${Math.max(...x).toFixed(0)})`;
console.log(`| ${n}-token prefill, ms median (min-max), ${a.reps} reps | logits: last | logits: all | compute buffers, all |`);
console.log('|---|---|---|---|');
console.log(`| ${model.device} | ${fmt(rows.last)} | ${fmt(rows.all)} | ${buffers} |`);
console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
model.dispose();
