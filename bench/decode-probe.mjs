#!/usr/bin/env node
// Greedy decoding timed alone, as generation runs it at temperature 0: one greedy run on the
// model's thread (ModelContext.decode, the pick taken in the graph), or with --per-step one
// evaluate() per token (the event-loop trip each step took before). Tokens/s, and per-step times
// as the picks reach JS. For comparing settings on one model (threads, a backend, env such as
// GGML_CUDA_DISABLE_GRAPHS); bench/run.mjs is the suite.
// --like-bench first does what `hovle bench` does before its decode measurement (an image
// encode, three 512-token prefills), and every repetition starts with a rewind, as there.
//   node bench/decode-probe.mjs MODEL.gguf [--backend cpu|cuda|vulkan] [--threads N] [--steps 64]
//        [--depth 0] [--context N] [--reps 1] [--like-bench] [--per-step] [--no-flash]
import { parseArgs } from 'node:util';

import { HovleModel } from '../dist/runtime/model.js';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    backend: { type: 'string', default: 'cpu' }, threads: { type: 'string' }, steps: { type: 'string', default: '64' },
    depth: { type: 'string', default: '0' }, context: { type: 'string' }, reps: { type: 'string', default: '1' },
    'like-bench': { type: 'boolean', default: false }, 'per-step': { type: 'boolean', default: false },
    'no-flash': { type: 'boolean', default: false },
  },
});
const steps = Number(a.steps);
const depth = Number(a.depth);
const m = await HovleModel.load(positionals[0], { backend: a.backend });
const ctx = await m.createContext({
  contextSize: a.context ? Number(a.context) : depth + steps + 600, kvType: 'f16', flashAttention: !a['no-flash'],
  ...(a.threads ? { threads: Number(a.threads) } : {}),
});
const V = m.hparams.vocabSize;
const text = (id) => (id === m.vocab.imageContextId ? id + 1 : id);
const ids = (n) => Array.from({ length: n }, (_, i) => text((3000 + ((i * 7919) % 20000)) % V));
if (a['like-bench']) {
  const side = m.hparams.vision.imageSize;
  await ctx.encodeImages([{ data: new Float32Array(3 * side * side).fill(0.1), tiles: 1 }]);
  for (let i = 0; i < 3; i++) {
    await ctx.rewind(0);
    await ctx.evaluate(ids(512), [], { logits: 'last' });
  }
  await ctx.rewind(0);
}
if (depth > 0) await ctx.evaluate(ids(depth), [], { logits: 'last' });
else if (!a['like-bench']) await ctx.evaluate(ids(1), [], { logits: 'last' });
const med = (x) => [...x].sort((p, q) => p - q)[x.length >> 1];
const out = [];
for (let rep = 0; rep < Number(a.reps); rep++) {
  await ctx.rewind(depth);
  let tok = text(3001 % V);
  const wall = [];
  const t0 = performance.now();
  let t = t0;
  if (a['per-step']) {
    for (let k = 0; k < steps; k++) {
      const { argmax } = await ctx.evaluate([tok], [], { logits: 'last', greedy: true });
      tok = argmax[0];
      wall.push(performance.now() - t);
      t = performance.now();
    }
  } else {
    for await (const _ of ctx.decode(tok, { maxSteps: steps })) {
      wall.push(performance.now() - t);
      t = performance.now();
    }
  }
  const total = performance.now() - t0;
  out.push({ rep, tokPerS: steps / (total / 1000), medianMs: +med(wall).toFixed(3), firstMs: wall.slice(0, 4).map((x) => +x.toFixed(2)), maxMs: +Math.max(...wall).toFixed(2) });
}
console.log(JSON.stringify({ model: positionals[0].split('/').pop(), backend: a.backend, device: m.device, threads: a.threads ?? 'default', depth, steps, likeBench: a['like-bench'], perStep: a['per-step'], reps: out }));
ctx.dispose();
m.dispose();
