#!/usr/bin/env node
// Event-loop delay while a session prefills an image and generates: inference runs on the
// model's own native thread, so the loop should stay responsive. Prints percentiles in ms.
//   node bench/event-loop.mjs MODEL.gguf IMAGE [--tokens 32]
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { createSession, loadModel } from '../dist/index.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { tokens: { type: 'string', default: '32' } } });
const [modelPath, image] = positionals;
if (!modelPath || !image) throw new Error('usage: bench/event-loop.mjs MODEL.gguf IMAGE [--tokens N]');
const model = await loadModel(modelPath);
const session = await createSession(model, { contextSize: 4096 });
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
const r = await session.ask({ text: 'Describe the image.', images: [image] }, { maxTokens: Number(values.tokens), temperature: 0.7, seed: 1 });
h.disable();
const ms = (ns) => +(ns / 1e6).toFixed(2);
console.table([{ tokens: r.tokens.length, prefillMs: Math.round(r.stats.prefillMs), loopDelayP50ms: ms(h.percentile(50)), p99ms: ms(h.percentile(99)), maxMs: ms(h.max) }]);
session.dispose();
model.dispose();
