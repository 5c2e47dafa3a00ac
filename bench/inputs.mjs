// The models and binaries a benchmark compares, made on first use: the full-size synthetic HoVLE
// per type (random weights), llama.cpp's llama-bench and llama-quantize built from the pinned
// source, and the InternLM2 GGUF of the same decoder shapes that llama.cpp quantizes itself.
// Shared by bench/run.mjs and bench/decode-pairs.mjs, so both measure the same files.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { run } from './child.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** {type: path} of the synthetic HoVLE GGUFs in `modelsDir`, written where missing. */
export function oursModels(modelsDir, types, log) {
  const ours = Object.fromEntries(types.map((t) => [t, join(modelsDir, `hovle-2b-${t}.gguf`)]));
  for (const [t, path] of Object.entries(ours)) {
    if (existsSync(path)) continue;
    log(`writing the synthetic HoVLE ${t} (once): ${path}`);
    run(process.execPath, [join(root, 'scripts', 'make-synthetic-model.mjs'), 'gguf', '-o', path, '--type', t], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return ours;
}

/**
 * llama.cpp's side: `bench` (llama-bench), `build` (what build-llama-peer.mjs reported: commit,
 * flags) and `models` ({type: path}). With `peerBin`, the binaries (and peer.json) come from that
 * folder instead of a build: how a GPU machine without a toolchain for them runs the bench.
 */
export function preparePeer({ modelsDir, types, peerBin, log }) {
  let built;
  if (peerBin) {
    const info = join(peerBin, 'peer.json');
    built = { ...(existsSync(info) ? JSON.parse(readFileSync(info, 'utf8')) : {}), 'llama-bench': join(peerBin, 'llama-bench'), 'llama-quantize': join(peerBin, 'llama-quantize') };
    log(`llama.cpp binaries from ${peerBin}${existsSync(info) ? '' : ' (no peer.json: commit unknown)'}`);
  } else {
    log('building llama.cpp (llama-bench, llama-quantize) from the pinned source, if needed');
    built = JSON.parse(run(process.execPath, [join(root, 'scripts', 'build-llama-peer.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] }).stdout.trim().split('\n').pop());
  }
  log('writing the InternLM2 peer models, if needed');
  run(process.execPath, [join(root, 'scripts', 'make-internlm2-peer.mjs'), modelsDir, '--types', types.join(','), '--quantize', built['llama-quantize']], { stdio: ['ignore', 'pipe', 'inherit'] });
  return { bench: built['llama-bench'], build: built, models: Object.fromEntries(types.map((t) => [t, join(modelsDir, `internlm2-hovle-peer-${t}.gguf`)])) };
}
