#!/usr/bin/env node
// The forward pass on a GPU backend against the golden data, without the test runner (a lent
// GPU machine has no node_modules; scripts/gpu-check.sh runs this there). The tiny fixtures
// (test/fixtures/, copied from ../shared/fixtures by scripts/fixtures/copy-goldens.mjs) are
// converted to F32 GGUFs and run with an F32 KV cache on the device and on the CPU, from the
// same preprocessed pixels: logits within 6e-3 of each other (1.2e-2 past 4000 positions, the
// fixtures README's allowance for the many-tile post cases) and the same greedy continuation;
// and, where the pixels are the reference's (PNG, text, or a build whose JPEG decoder is
// libjpeg-turbo: stb_image decodes JPEGs a few levels apart), the same bounds against the goldens.
// On CUDA, TF32 is turned off (NVIDIA_TF32_OVERRIDE=0) unless --tf32: ggml asks cuBLAS for TF32
// in F32 GEMMs, whose 10-bit mantissas move these logits by 0.04-0.8 (measured on an H200), as
// lavapipe's f16 mode does. Then the shipped settings (F16 KV, flash attention) on Q8_0 weights,
// against the CPU running the same file: the greedy tokens must agree up to the first step where
// the CPU's top-2 margin is under 0.6 (the bound test/forward.test.ts uses for q8_0 weights),
// and the greedy picks taken in the device's graph must be the argmax of its logits.
//
//   node scripts/check-backend.mjs [--backend cuda|vulkan|metal] [--tf32]     exit 3 on a mismatch
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';

import { convertCheckpoint } from '../dist/convert/convert.js';
import { HovleModel } from '../dist/runtime/model.js';
import { argmax } from '../dist/runtime/argmax.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = join(root, 'test', 'fixtures');
const { values: args } = parseArgs({ options: { backend: { type: 'string', default: 'cuda' }, tf32: { type: 'boolean', default: false } }, strict: true });
// Read by cuBLAS when its first handle is made, after this line.
if (args.backend === 'cuda' && !args.tf32) process.env.NVIDIA_TF32_OVERRIDE ??= '0';
const { loadAddon } = await import('../dist/native/load.js');
const referencePixels = loadAddon().addon.imageInfo().jpegDecoder === 'libjpeg-turbo';
const dir = mkdtempSync(join(tmpdir(), 'hovle-check-backend-'));

function golden(variant, c, key, Type) {
  const file = join(FIXTURES, variant, 'golden', c.files[key].file);
  const raw = file.endsWith('.gz') ? gunzipSync(readFileSync(file)) : readFileSync(file);
  return new Type(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
}
const maxDiff = (a, b) => {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Number.isNaN(a[i] - b[i]) ? Infinity : Math.abs(a[i] - b[i]));
  return d;
};

async function inputs(model, variant, c) {
  const ids = golden(variant, c, 'input_ids', Int32Array);
  const images = c.image ? [await model.preprocessImage(join(FIXTURES, 'images', basename(c.image)), { maxTiles: c.maxTiles })] : [];
  return { ids, images };
}

let failures = 0;
const rows = [];
try {
  for (const variant of ['hovle-tiny', 'hovle-tiny-post']) {
    const cases = JSON.parse(readFileSync(join(FIXTURES, variant, 'golden', 'cases.json'), 'utf8')).cases;
    const f32 = join(dir, `${variant}-f32.gguf`);
    await convertCheckpoint(join(FIXTURES, variant, 'hf'), f32, { type: 'f32' });
    const model = await HovleModel.load(f32, { backend: args.backend });
    const cpuModel = await HovleModel.load(f32, { backend: 'cpu' });
    const run = async (m, c) => {
      const { ids, images } = await inputs(m, variant, c);
      const ctx = await m.createContext({ contextSize: ids.length + 24, embeddingContextSize: (c.hdSeqLen ?? ids.length) + 24, kvType: 'f32', flashAttention: false });
      const r = await ctx.evaluate(ids, images, { logits: c.files.logits.rows });
      let logits = r.logits.subarray(r.logits.length - m.hparams.vocabSize);
      const out = [];
      const margins = [];
      for (let i = 0; i < c.greedy.ids.length; i++) {
        const best = argmax(logits);
        out.push(best);
        margins.push(logits[best] - Math.max(...logits.filter((_, v) => v !== best)));
        if (best === c.greedy.eos_id) break;
        logits = (await ctx.evaluate([best], [], { logits: 'last' })).logits;
      }
      ctx.dispose();
      return { logits: r.logits, greedy: out, margins };
    };
    const same = (a, b) => a.length === b.length && a.every((t, i) => t === b[i]);
    // Against the CPU, logits a tolerance apart may pick either of two near-tied tokens: the
    // continuations must agree up to the first step where the CPU's top-2 margin is under 0.05.
    const sameAsCpu = (dev, cpu) => {
      const close = cpu.margins.findIndex((x) => x < 0.05);
      const n = close === -1 ? cpu.greedy.length : close + 1;
      return dev.greedy.length >= n && cpu.greedy.slice(0, n).every((t, i) => t === dev.greedy[i]);
    };
    for (const c of cases) {
      const tol = (c.hdSeqLen ?? 0) > 4000 ? 1.2e-2 : 6e-3;
      const dev = await run(model, c);
      const cpu = await run(cpuModel, c);
      const dCpu = maxDiff(dev.logits, cpu.logits);
      const withGolden = referencePixels || !/\.jpe?g$/i.test(c.image ?? '');
      const dGolden = maxDiff(dev.logits, golden(variant, c, 'logits', Float32Array));
      const ok = dCpu <= tol && sameAsCpu(dev, cpu) && (!withGolden || (dGolden <= tol && same(dev.greedy, c.greedy.ids)));
      if (!ok) failures++;
      rows.push(`${ok ? 'ok  ' : 'FAIL'} ${model.device} f32/f32 ${variant} ${c.name}: max |dlogits| vs CPU ${dCpu.toExponential(2)}, ` +
        `vs golden ${dGolden.toExponential(2)}${withGolden ? '' : ' (not checked: JPEG decoded by stb_image)'} (tol ${tol}); greedy ` +
        `${same(dev.greedy, cpu.greedy) ? 'as the CPU' : `${sameAsCpu(dev, cpu) ? 'as the CPU up to a near tie' : 'differs from the CPU'}: ${dev.greedy.join(',')} vs ${cpu.greedy.join(',')} (CPU margins ${cpu.margins.map((x) => x.toFixed(3)).join(',')})`}` +
        `${withGolden ? (same(dev.greedy, c.greedy.ids) ? ' and the golden' : `, differs from the golden ${c.greedy.ids.join(',')}`) : ''}`);
      process.stderr.write(rows.at(-1) + '\n');
    }
    model.dispose();
    cpuModel.dispose();

    // Shipped settings: Q8_0 weights, F16 KV, flash attention; the CPU on the same file is the reference.
    const q8 = join(dir, `${variant}-q8_0.gguf`);
    await convertCheckpoint(join(FIXTURES, variant, 'hf'), q8, { type: 'q8_0' });
    const dev = await HovleModel.load(q8, { backend: args.backend });
    const cpu = await HovleModel.load(q8, { backend: 'cpu' });
    for (const c of cases.filter((x) => ['fjord_max1_en', 'gradient_max6_en', 'text_only_en'].includes(x.name))) {
      const greedy = [];
      const margins = [];
      for (const m of [cpu, dev]) {
        const { ids, images } = await inputs(m, variant, c);
        const ctx = await m.createContext({ contextSize: ids.length + 24, embeddingContextSize: (c.hdSeqLen ?? ids.length) + 24, kvType: 'f16', flashAttention: true });
        let logits = (await ctx.evaluate(ids, images, { logits: 'last' })).logits;
        const toks = [];
        const mg = [];
        for (let i = 0; i < 16; i++) {
          const best = argmax(logits);
          const second = argmax(logits.map((x, v) => (v === best ? -Infinity : x)));
          toks.push(best);
          mg.push(logits[best] - logits[second]);
          logits = (await ctx.evaluate([best], [], { logits: 'last' })).logits;
        }
        ctx.dispose();
        greedy.push(toks);
        margins.push(mg);
      }
      // Greedy picks taken in the device's graph (evaluate's greedy, as Session.ask decodes at
      // temperature 0) along the same tokens: the argmax of the device's own logits.
      {
        const { ids, images } = await inputs(dev, variant, c);
        const ctx = await dev.createContext({ contextSize: ids.length + 24, embeddingContextSize: (c.hdSeqLen ?? ids.length) + 24, kvType: 'f16', flashAttention: true });
        const picks = [(await ctx.evaluate(ids, images, { logits: 'last', greedy: true })).argmax[0]];
        for (const t of greedy[1].slice(0, -1)) picks.push((await ctx.evaluate([t], [], { logits: 'last', greedy: true })).argmax[0]);
        // And as one greedy run on the model's thread (how ask() decodes), from the prompt again.
        await ctx.rewind(ids.length, ctx.cached.embedding - 15);
        const run = [picks[0]];
        for await (const t of ctx.decode(picks[0], { maxSteps: 15 })) run.push(t);
        ctx.dispose();
        for (const [what, got] of [['greedy picks in the graph', picks], ['a greedy run', run]]) {
          const ok = got.length === greedy[1].length && got.every((t, i) => t === greedy[1][i]);
          if (!ok) failures++;
          rows.push(`${ok ? 'ok  ' : 'FAIL'} ${dev.device} q8_0/f16+FA ${variant} ${c.name}: ${what} ${ok ? 'as' : `differ from`} the argmax of the logits${ok ? '' : `: ${got.join(',')} vs ${greedy[1].join(',')}`}`);
          process.stderr.write(rows.at(-1) + '\n');
        }
      }
      // Up to the first step where the CPU's choice is close, the device must pick the same tokens.
      let agreeUntil = 0;
      while (agreeUntil < 16 && greedy[0][agreeUntil] === greedy[1][agreeUntil]) agreeUntil++;
      const firstClose = margins[0].findIndex((x) => x <= 0.6);
      const ok = agreeUntil === 16 || (firstClose !== -1 && agreeUntil >= firstClose);
      if (!ok) failures++;
      rows.push(`${ok ? 'ok  ' : 'FAIL'} ${dev.device} q8_0/f16+FA ${variant} ${c.name}: ${agreeUntil}/16 greedy tokens as the CPU${agreeUntil < 16 ? ` (CPU margin ${margins[0][agreeUntil].toFixed(3)} there)` : ''}`);
      process.stderr.write(rows.at(-1) + '\n');
    }
    dev.dispose();
    cpu.dispose();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(rows.join('\n') + `\n${failures === 0 ? 'all passed' : `${failures} failed`}\n`);
process.exit(failures === 0 ? 0 : 3);
