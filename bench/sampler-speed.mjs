#!/usr/bin/env node
// What one sampled token costs, the sampler alone (native/sampler.cpp through the JS Sampler),
// over a full-size vocabulary of logits: uniform (a random-weight model's flat rows, the draw
// walks deep) and peaked (a few strong tokens over a normal-ish tail, like a trained model).
//   node bench/sampler-speed.mjs [--vocab 92553] [--tokens 300]
import { parseArgs } from 'node:util';

import { Sampler } from '../dist/runtime/sampler.js';

const { values: a } = parseArgs({ options: { vocab: { type: 'string', default: '92553' }, tokens: { type: 'string', default: '300' } } });
const V = Number(a.vocab);
const N = Number(a.tokens);
let s = 12345;
const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
const uniform = Float32Array.from({ length: V }, () => (rand() * 2 - 1) * 8);
const peaked = Float32Array.from({ length: V }, () => (rand() + rand() + rand() - 1.5) * 3);
for (let k = 0; k < 10; k++) peaked[Math.floor(rand() * V)] = 12 + k * 0.5;
const SETTINGS = [
  { temperature: 0.8 },
  { temperature: 0.8, topK: 40, topP: 0.95 },
  { temperature: 0.7, topP: 0.9, repeatPenalty: 1.1 },
  { temperature: 1, minP: 0.05 },
];
const history = Int32Array.from({ length: 64 }, (_, i) => (i * 7919) % V);
console.log(`| setting | uniform logits ms/token | peaked logits ms/token |`);
console.log('|---|---|---|');
for (const o of SETTINGS) {
  const cells = [uniform, peaked].map((l) => {
    const sampler = new Sampler({ ...o, seed: 1 }, V);
    for (let i = 0; i < 10; i++) sampler.sample(l, history);
    const t0 = performance.now();
    for (let i = 0; i < N; i++) sampler.sample(l, history);
    return ((performance.now() - t0) / N).toFixed(3);
  });
  console.log(`| ${JSON.stringify(o)} | ${cells[0]} | ${cells[1]} |`);
}
