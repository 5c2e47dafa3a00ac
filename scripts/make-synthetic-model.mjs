#!/usr/bin/env node
// A seeded random-weight HoVLE with the real 2.6B shapes, for performance and memory work:
//   node scripts/make-synthetic-model.mjs gguf -o models/hovle-2b-q4_k_m.gguf --type q4_k_m
//   node scripts/make-synthetic-model.mjs hf -o models/hovle-2b-hf      (F32 safetensors, ~10.4 GB)
// The tokenizer is the test fixture's, padded to the real 92553 ids. Weights are random: outputs
// are meaningless. Prints wall time and peak RSS. Needs `npm run build:ts`.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { writeSyntheticCheckpoint, writeSyntheticModel } from '../dist/convert/synthetic.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    output: { type: 'string', short: 'o' },
    type: { type: 'string', short: 't', default: 'q4_k_m' },
    seed: { type: 'string', default: '1' },
    tokenizer: { type: 'string', default: join(root, 'test', 'fixtures', 'hovle-tiny', 'hf') },
  },
});
const mode = positionals[0];
if ((mode !== 'gguf' && mode !== 'hf') || !values.output) {
  process.stderr.write('usage: make-synthetic-model.mjs gguf|hf -o OUT [--type TYPE] [--seed N] [--tokenizer DIR]\n');
  process.exit(2);
}
const started = Date.now();
let result;
if (mode === 'gguf') {
  let last = -1;
  result = await writeSyntheticModel(values.output, {
    type: values.type,
    seed: Number(values.seed),
    tokenizerDir: values.tokenizer,
    onProgress: (p) => {
      const pct = Math.floor((100 * p.bytesWritten) / p.bytesTotal / 10) * 10;
      if (pct !== last) process.stderr.write(`${pct}% `), (last = pct);
    },
  });
  process.stderr.write('\n');
} else {
  result = await writeSyntheticCheckpoint(values.output, { seed: Number(values.seed), tokenizerDir: values.tokenizer });
}
const seconds = (Date.now() - started) / 1000;
const peakRssMiB = process.resourceUsage().maxRSS / 1024;
process.stdout.write(JSON.stringify({ mode, output: values.output, type: mode === 'gguf' ? values.type : 'f32-safetensors', bytes: result.bytes, seconds, peakRssMiB: Math.round(peakRssMiB) }) + '\n');
