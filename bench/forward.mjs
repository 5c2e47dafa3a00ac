#!/usr/bin/env node
// Prefill and decode speed of one GGUF on this machine (the full benchmark suite against
// llama.cpp is issue 8's bench/). Prints one JSON line.
//   node bench/forward.mjs MODEL.gguf [--prompt 512] [--decode 32] [--threads N] [--image-tiles 1] [--flash]
import { parseArgs } from 'node:util';

import { tokensPerTile } from '../dist/model/hparams.js';
import { HovleModel } from '../dist/runtime/model.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prompt: { type: 'string', default: '512' },
    decode: { type: 'string', default: '32' },
    threads: { type: 'string' },
    'image-tiles': { type: 'string', default: '0' },
    flash: { type: 'boolean', default: false },
    kv: { type: 'string', default: 'f16' },
  },
});
const path = positionals[0];
if (!path) throw new Error('usage: bench/forward.mjs MODEL.gguf');
const nPrompt = Number(values.prompt);
const nDecode = Number(values.decode);
const tiles = Number(values['image-tiles']);

let t = performance.now();
const model = await HovleModel.load(path);
const loadMs = performance.now() - t;
const hp = model.hparams;
const perTile = tokensPerTile(hp.vision);
const ctx = await model.createContext({
  contextSize: nPrompt + nDecode + 8,
  kvType: values.kv,
  flashAttention: values.flash,
  ...(values.threads ? { threads: Number(values.threads) } : {}),
});
// Random token ids (avoiding the special range) stand in for a prompt; an image adds its tiles.
let seed = 12345;
const span = Math.max(1, Math.min(20000, hp.vocabSize - 320));
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % span) + 300;
const ids = [model.vocab.bosId];
const images = [];
if (tiles > 0) {
  const side = hp.vision.imageSize;
  const px = new Float32Array(tiles * 3 * side * side).map(() => (rand() % 200) / 100 - 1);
  images.push({ data: px, tiles });
  for (let i = 0; i < tiles * perTile; i++) ids.push(model.vocab.imageContextId);
}
while (ids.length < nPrompt) ids.push(rand());

t = performance.now();
let r = await ctx.evaluate(ids, images, { logits: 'last' });
const prefillMs = performance.now() - t;
let tok = 0;
t = performance.now();
for (let i = 0; i < nDecode; i++) {
  let best = 0;
  for (let v = 1; v < r.logits.length; v++) if (r.logits[v] > r.logits[best]) best = v;
  tok = best;
  r = await ctx.evaluate([tok], [], { logits: 'last' });
}
const decodeMs = performance.now() - t;
process.stdout.write(JSON.stringify({
  model: path,
  device: model.device,
  promptTokens: ids.length,
  imageTiles: tiles,
  loadMs: Math.round(loadMs),
  prefillTokensPerSecond: +(ids.length / (prefillMs / 1000)).toFixed(2),
  decodeTokensPerSecond: +(nDecode / (decodeMs / 1000)).toFixed(2),
  peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  kv: values.kv,
  flash: values.flash,
}) + '\n');
ctx.dispose();
model.dispose();
