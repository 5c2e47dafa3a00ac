#!/usr/bin/env node
// The README's first command ends here: answer a question about a photo, end to end (GGUF
// conversion, image pipeline, tokenizer, forward pass, sampling), with no download. The model is
// the tiny test checkpoint (test/fixtures/hovle-tiny, from the shared fixtures): real HoVLE
// geometry, RANDOM weights, so the answer is meaningless text. Real weights: `npx hovle pull
// OpenGVLab/HoVLE`, then pass that path to `hovle ask -m`.
//   node scripts/demo.mjs [question]
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'cli', 'main.js');
const cache = process.env.HOVLE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'hovle');
const model = join(cache, 'demo', 'hovle-tiny-q8_0.gguf');
const image = join(root, 'test', 'fixtures', 'images', 'fjord.jpg');
const question = process.argv[2] ?? 'What is in this picture?';

const hovle = (args) => {
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

// Converted every time (a fraction of a second): a file left by an older hovle could differ.
mkdirSync(dirname(model), { recursive: true });
hovle(['convert', join(root, 'test', 'fixtures', 'hovle-tiny', 'hf'), '-o', model, '--type', 'q8_0']);
process.stderr.write(
  `\nThis is the tiny test model: the HoVLE architecture and image pipeline at toy widths, with\n` +
    `RANDOM weights: the answer below is meaningless text. Real weights: npx hovle pull OpenGVLab/HoVLE\n\n` +
    `$ hovle ask -m ${model} --image ${image} "${question}"\n`,
);
hovle(['ask', '-m', model, '--image', image, '-n', '48', '-q', question]);
