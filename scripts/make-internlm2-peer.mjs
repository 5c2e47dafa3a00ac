#!/usr/bin/env node
// A seeded random-weight InternLM2 GGUF with the shapes of HoVLE's decoder, for llama.cpp's
// llama-bench: the peer our decoder speed is measured against. HoVLE generates through all its
// decoder layers (8 embedding-module + 24 LLM), so the peer has that many InternLM2 layers, the
// same widths, vocabulary and context, and llama.cpp's own metadata and tensor names. Writes the
// F16 file with our GGUF writer, then the quantized ones with the peer's llama-quantize (built
// by scripts/build-llama-peer.mjs), so each type is quantized the way llama.cpp users get it.
//
//   node scripts/make-internlm2-peer.mjs [OUT_DIR] [--types f16,q8_0,q4_0,q4_k_m] [--seed 1]
//        [--threads N] [--quantize PATH]
//
// OUT_DIR defaults to $HOVLE_BENCH_MODELS or /work/models. Files that exist are kept. Weights
// are random: outputs are meaningless. Needs `npm run build:ts` (imports dist/). Prints one JSON
// line per file on stdout.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// llama-quantize's type names for our file types.
const QUANT = { q8_0: 'Q8_0', q4_0: 'Q4_0', q4_k_m: 'Q4_K_M' };

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    types: { type: 'string', default: 'f16,q8_0,q4_0,q4_k_m' },
    seed: { type: 'string', default: '1' },
    threads: { type: 'string' },
    quantize: { type: 'string' },
  },
  strict: true,
});

function log(msg) {
  process.stderr.write(`[make-internlm2-peer] ${msg}\n`);
}

function fail(msg) {
  log(`error: ${msg}`);
  process.exit(1);
}

async function importDist(rel) {
  const file = join(root, 'dist', rel);
  if (!existsSync(file)) fail(`${file} is missing: run \`npm run build:ts\` first`);
  return import(pathToFileURL(file).href);
}

const types = args.types.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
for (const t of types) if (t !== 'f16' && !(t in QUANT)) fail(`unknown type '${t}' (known: f16, ${Object.keys(QUANT).join(', ')})`);
const seed = Number(args.seed);
if (!Number.isInteger(seed)) fail(`--seed must be an integer, not '${args.seed}'`);
const threads = Number(args.threads ?? availableParallelism());
const outDir = resolve(positionals[0] ?? process.env.HOVLE_BENCH_MODELS ?? '/work/models');
const fileFor = (t) => join(outDir, `internlm2-hovle-peer-${t}.gguf`);

const { GgufWriter } = await importDist('gguf/writer.js');
const { hovle2bHParams } = await importDist('convert/synthetic.js');
const { totalBlocks } = await importDist('model/hparams.js');

// The shapes hovle's own synthetic model uses (the published 2.6B checkpoint's), from one place.
const h = hovle2bHParams();
const seg = h.llm;
for (const k of ['embeddingLength', 'feedForwardLength', 'headCount', 'headCountKv']) {
  // The peer has one kind of layer; if HoVLE's two segments ever differ in shape it stops being a peer.
  if (h.embedding[k] !== seg[k]) fail(`HoVLE's embedding and LLM segments differ in ${k}; the peer cannot mirror both`);
}
const nLayer = totalBlocks(h);
const nEmbd = seg.embeddingLength;
const nFf = seg.feedForwardLength;
const headDim = nEmbd / seg.headCount;
const nEmbdKv = seg.headCountKv * headDim;
const nVocab = h.vocabSize;

// GGUF's fixed codes for the two types this script writes; it needs no addon that way.
const F32 = { id: 0, name: 'f32', blockSize: 1, typeSize: 4, isQuantized: false, canRead: true };
const F16 = { id: 1, name: 'f16', blockSize: 1, typeSize: 2, isQuantized: false, canRead: true };

/** SentencePiece-style vocabulary that llama.cpp's "llama" loader accepts: unique pieces, all 256 byte tokens. */
function vocabulary() {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // UNKNOWN, CONTROL, CONTROL
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6); // BYTE
  }
  // HoVLE's chat and image tokens sit at the end of its vocabulary, as in the released tokenizer.
  const specials = ['<|im_end|>', '<|im_start|>', '<img>', '</img>', '<IMG_CONTEXT>', '<quad>', '</quad>', '<ref>', '</ref>', '<box>', '</box>'];
  const fillers = nVocab - tokens.length - specials.length;
  for (let i = 0; i < fillers; i++) {
    tokens.push(i < 94 ? String.fromCharCode(33 + i) : `\u2581p${i.toString(36)}`);
    types.push(1); // NORMAL
  }
  for (const [i, s] of specials.entries()) {
    tokens.push(s);
    types.push(i < 2 ? 3 : 4); // CONTROL, USER_DEFINED
  }
  const scores = new Float32Array(nVocab);
  for (let i = 0; i < nVocab; i++) scores[i] = types[i] === 1 ? -i : 0;
  return { tokens, types, scores, eot: tokens.indexOf('<|im_end|>') };
}

function metadata() {
  const v = vocabulary();
  const u32 = (value) => ({ type: 'u32', value });
  const f32 = (value) => ({ type: 'f32', value });
  return [
    ['general.architecture', { type: 'string', value: 'internlm2' }],
    ['general.name', { type: 'string', value: 'internlm2-hovle-peer (random weights)' }],
    ['general.file_type', u32(1)], // LLAMA_FTYPE_MOSTLY_F16
    ['internlm2.context_length', u32(seg.contextLength)],
    ['internlm2.embedding_length', u32(nEmbd)],
    ['internlm2.block_count', u32(nLayer)],
    ['internlm2.feed_forward_length', u32(nFf)],
    ['internlm2.rope.dimension_count', u32(headDim)],
    ['internlm2.rope.freq_base', f32(seg.ropeFreqBase)],
    ['internlm2.attention.head_count', u32(seg.headCount)],
    ['internlm2.attention.head_count_kv', u32(seg.headCountKv)],
    ['internlm2.attention.layer_norm_rms_epsilon', f32(seg.rmsEps)],
    ['internlm2.vocab_size', u32(nVocab)],
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'arr_string', value: v.tokens }],
    ['tokenizer.ggml.scores', { type: 'arr_f32', value: v.scores }],
    ['tokenizer.ggml.token_type', { type: 'arr_i32', value: v.types }],
    ['tokenizer.ggml.unknown_token_id', u32(0)],
    ['tokenizer.ggml.bos_token_id', u32(1)],
    ['tokenizer.ggml.eos_token_id', u32(2)],
    ['tokenizer.ggml.eot_token_id', u32(v.eot)],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
}

/** llama.cpp's LLM_ARCH_INTERNLM2 tensors (src/models/internlm2.cpp), ggml dims (ne0 first). */
function tensors() {
  const mat = (name, cols, rows) => ({ name, dims: [cols, rows], type: F16 });
  const norm = (name) => ({ name, dims: [nEmbd], type: F32, norm: true });
  const out = [mat('token_embd.weight', nEmbd, nVocab)];
  for (let i = 0; i < nLayer; i++) {
    const b = `blk.${i}`;
    out.push(
      norm(`${b}.attn_norm.weight`),
      mat(`${b}.attn_q.weight`, nEmbd, nEmbd),
      mat(`${b}.attn_k.weight`, nEmbd, nEmbdKv),
      mat(`${b}.attn_v.weight`, nEmbd, nEmbdKv),
      mat(`${b}.attn_output.weight`, nEmbd, nEmbd),
      norm(`${b}.ffn_norm.weight`),
      mat(`${b}.ffn_gate.weight`, nEmbd, nFf),
      mat(`${b}.ffn_up.weight`, nEmbd, nFf),
      mat(`${b}.ffn_down.weight`, nFf, nEmbd),
    );
  }
  out.push(norm('output_norm.weight'), mat('output.weight', nEmbd, nVocab));
  return out;
}

function hashName(s) {
  let x = 2166136261;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 16777619) >>> 0;
  return x;
}

/** Float32 bit patterns to float16, round to nearest even (subnormals included). */
function toHalf(src, dst) {
  for (let i = 0; i < src.length; i++) {
    const x = src[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    const e = exp - 112;
    let r;
    if (exp === 0xff) r = 0x7c00 | (mant ? 0x200 : 0);
    else if (e >= 31) r = 0x7c00;
    else if (e <= 0) {
      if (e < -10) r = 0;
      else {
        const m = mant | 0x800000;
        const shift = 14 - e;
        r = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && r & 1)) r++;
      }
    } else {
      r = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      // A carry out of the mantissa lands in the exponent, which is the right result (up to inf).
      if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
    }
    dst[i] = sign | r;
  }
}

/**
 * The generator of src/convert/synthetic.ts (xorshift32 per tensor, seeded by name): uniform
 * noise scaled like a trained layer (1/sqrt(fan-in)), norm weights near 1. Yields the tensor's
 * bytes in chunks of about 16 MiB.
 */
function* randomTensor(t) {
  let state = (hashName(t.name) ^ Math.imul(seed, 2654435761)) >>> 0 || 1;
  const cols = t.dims[0];
  const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const scale = t.norm ? 0.1 : Math.sqrt(3 / cols);
  const step = Math.max(1, Math.floor((8 * 1024 * 1024) / cols));
  for (let r = 0; r < rows; r += step) {
    const f = new Float32Array(Math.min(step, rows - r) * cols);
    for (let i = 0; i < f.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      const u = (state >>> 0) / 4294967296 - 0.5;
      f[i] = t.norm ? 1 + scale * u : 2 * scale * u;
    }
    if (t.type === F32) {
      yield new Uint8Array(f.buffer);
    } else {
      const h16 = new Uint16Array(f.length);
      toHalf(new Uint32Array(f.buffer), h16);
      yield new Uint8Array(h16.buffer);
    }
  }
}

async function writeF16(path) {
  const specs = tensors();
  const writer = await GgufWriter.create(path, metadata(), specs.map(({ name, dims, type }) => ({ name, dims, type })));
  let lastPct = -1;
  try {
    for (const t of specs) {
      for (const chunk of randomTensor(t)) await writer.write(chunk);
      const pct = Math.floor((10 * writer.bytesWritten) / writer.totalBytes) * 10;
      if (pct !== lastPct) process.stderr.write(`${pct}% `), (lastPct = pct);
    }
    process.stderr.write('\n');
    await writer.finish();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

function quantizeBinary() {
  const bin = resolve(args.quantize ?? join(root, 'build-peer', 'bin', 'llama-quantize'));
  if (!existsSync(bin)) fail(`${bin} is missing: run \`node scripts/build-llama-peer.mjs\` first`);
  return bin;
}

/** seconds: null for a file kept from an earlier run. */
function emit(type, path, seconds) {
  process.stdout.write(JSON.stringify({ type, path, bytes: statSync(path).size, seconds }) + '\n');
}

mkdirSync(outDir, { recursive: true });
const f16Path = fileFor('f16');
const wanted = new Set(types);
const needsF16 = wanted.has('f16') || [...wanted].some((t) => t !== 'f16' && !existsSync(fileFor(t)));
if (needsF16) {
  if (existsSync(f16Path)) {
    log(`keeping ${f16Path}`);
    if (wanted.has('f16')) emit('f16', f16Path, null);
  } else {
    log(`writing ${f16Path}: ${nLayer} layers, hidden ${nEmbd}, ffn ${nFf}, heads ${seg.headCount}/${seg.headCountKv}, vocab ${nVocab}`);
    const started = Date.now();
    await writeF16(f16Path);
    emit('f16', f16Path, (Date.now() - started) / 1000);
  }
}

for (const t of types) {
  if (t === 'f16') continue;
  const out = fileFor(t);
  if (existsSync(out)) {
    log(`keeping ${out}`);
    emit(t, out, null);
    continue;
  }
  const bin = quantizeBinary();
  // Quantize to a temporary name: an interrupted run must not leave a file that looks finished.
  const tmp = `${out}.partial-${process.pid}`;
  log(`quantizing to ${QUANT[t]} with ${bin} (${threads} threads)`);
  const started = Date.now();
  const r = spawnSync(bin, [f16Path, tmp, QUANT[t], String(threads)], { stdio: ['ignore', 2, 2] });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    fail(`llama-quantize ${QUANT[t]} failed: ${r.error?.message ?? `exit ${r.status ?? r.signal}`}`);
  }
  renameSync(tmp, out);
  emit(t, out, (Date.now() - started) / 1000);
}
