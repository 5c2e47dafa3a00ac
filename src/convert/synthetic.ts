// A seeded random-weight HoVLE with the real 2.6B shapes, written straight to GGUF, for
// performance and memory work (the real weights cannot be downloaded here). Its tokenizer comes
// from a checkpoint folder and is padded to the real vocabulary size; its answers are meaningless.
import { copyFile, mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { HovleError } from '../errors.js';
import { ggmlType } from '../gguf/ggml-types.js';
import type { GgufValue } from '../gguf/format.js';
import { type HovleHParams, totalBlocks } from '../model/hparams.js';
import { hparamsToMetadata } from '../model/metadata.js';
import { concreteTensors, IGNORED_HF_TENSORS } from '../model/schema.js';
import { fileTypeMetadata } from './convert.js';
import { templateStopToken } from './hf-config.js';
import { writeModel, type PlannedTensor, type RowSource, type WriteOptions, type WriteResult } from './model-writer.js';
import { readTokenizer } from './tokenizer-meta.js';
import { tensorType, type FileType } from './type-policy.js';
import templates from './chat-templates.json' with { type: 'json' };

/** Shapes of the published OpenGVLab/HoVLE (2.6B); values the docs mark UNVERIFIED use the code defaults. */
export function hovle2bHParams(): HovleHParams {
  const segment = (blockCount: number, rmsEps: number, ropeFreqBase: number) => ({
    blockCount, embeddingLength: 2048, feedForwardLength: 8192, headCount: 16, headCountKv: 8, rmsEps, ropeFreqBase,
    ropeScalingType: 'dynamic' as const, ropeScalingFactor: 2, contextLength: 32768,
  });
  return {
    name: 'hovle-2b-synthetic',
    vocabSize: 92553,
    embedding: { ...segment(8, 1e-5, 10000), ropeScalingType: 'none', ropeScalingFactor: 1 },
    llm: segment(24, 1e-5, 1e6),
    vision: {
      imageSize: 448, patchSize: 14, numChannels: 3, downsampleRatio: 0.5, pixelShuffleLoc: 'pre', normalizeEncoderOutput: false,
      minTiles: 1, maxTiles: 12, useThumbnail: true, imageMean: [0.485, 0.456, 0.406], imageStd: [0.229, 0.224, 0.225],
    },
    chat: { template: 'internlm2-chat', systemMessage: templates['internlm2-chat'].systemMessage },
  };
}

function hashName(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** Rows of uniform noise scaled like a trained layer (1/sqrt(fan-in)); norms near 1. */
function randomRows(name: string, rows: number, cols: number, seed: number, norm: boolean): RowSource {
  let state = (hashName(name) ^ Math.imul(seed, 2654435761)) >>> 0 || 1;
  const scale = norm ? 0.1 : Math.sqrt(3 / cols);
  return {
    type: ggmlType('f32'),
    rows,
    cols,
    async read(_r0, n) {
      const out = new Float32Array(n * cols);
      for (let i = 0; i < out.length; i++) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        const u = (state >>> 0) / 4294967296 - 0.5;
        out[i] = norm ? 1 + scale * u : 2 * scale * u;
      }
      return new Uint8Array(out.buffer);
    },
  };
}

export async function writeSyntheticModel(
  outPath: string,
  opts: WriteOptions & { type: FileType; tokenizerDir: string; seed?: number; hparams?: HovleHParams },
): Promise<WriteResult> {
  const h = opts.hparams ?? hovle2bHParams();
  const seed = opts.seed ?? 1;
  const tokenizer = await readTokenizer(opts.tokenizerDir, h.vocabSize, templateStopToken(h.chat.template));
  if (tokenizer.tokens.length !== h.vocabSize) throw new HovleError('INTERNAL', 'tokenizer size mismatch');
  const nBlocks = totalBlocks(h);
  const planned: PlannedTensor[] = concreteTensors(h).map((t) => {
    const cols = t.dims[0]!;
    const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
    return {
      name: t.gguf,
      dims: t.dims,
      type: ggmlType(tensorType(opts.type, { role: t.def.role, nDims: t.dims.length, cols, nBlocks, ...(t.block !== undefined ? { block: t.block } : {}) })),
      source: randomRows(t.gguf, rows, cols, seed, t.def.role.endsWith('_norm')),
    };
  });
  const metadata: Array<[string, GgufValue]> = [...hparamsToMetadata(h), ...fileTypeMetadata(opts.type), ...tokenizer.metadata];
  return writeModel(outPath, metadata, planned, opts);
}

/** config.json for these hyperparameters, in the published checkpoint's layout (inverse of readHfConfig). */
export function hfConfigFor(h: HovleHParams): Record<string, unknown> {
  const seg = (s: HovleHParams['llm']) => ({
    num_hidden_layers: s.blockCount, hidden_size: s.embeddingLength, intermediate_size: s.feedForwardLength,
    num_attention_heads: s.headCount, num_key_value_heads: s.headCountKv, hidden_act: 'silu', rms_norm_eps: s.rmsEps,
    rope_theta: s.ropeFreqBase, rope_scaling: s.ropeScalingType === 'none' ? null : { type: s.ropeScalingType, factor: s.ropeScalingFactor },
    max_position_embeddings: s.contextLength,
  });
  return {
    architectures: ['InternVLChatModel'],
    model_type: 'internvl_chat',
    embedding_config: {
      ...seg(h.embedding), model_type: 'holistic_embedding', num_channels: h.vision.numChannels, patch_size: h.vision.patchSize,
      image_size: h.vision.imageSize, downsample_ratio: h.vision.downsampleRatio, pixel_shuffle_loc: h.vision.pixelShuffleLoc,
      use_pixel_shuffle_proj: true, llm_vocab_size: h.vocabSize, llm_hidden_size: h.llm.embeddingLength,
    },
    llm_config: { ...seg(h.llm), model_type: 'internlm2', vocab_size: h.vocabSize, bias: false, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 },
    template: h.chat.template,
    downsample_ratio: h.vision.downsampleRatio,
    force_image_size: h.vision.imageSize,
    use_thumbnail: h.vision.useThumbnail,
    min_dynamic_patch: h.vision.minTiles,
    max_dynamic_patch: h.vision.maxTiles,
    ps_version: 'v2',
    normalize_encoder_output: h.vision.normalizeEncoderOutput,
    torch_dtype: 'float32',
  };
}

/**
 * A random-weight checkpoint in the Hugging Face layout (F32, sharded safetensors + index,
 * config.json, tokenizer files copied from `tokenizerDir`): the input for measuring
 * `hovle convert` on a full-size model. Written tensor by tensor in chunks.
 */
export async function writeSyntheticCheckpoint(
  dir: string,
  opts: { tokenizerDir: string; seed?: number; hparams?: HovleHParams; shardBytes?: number },
): Promise<{ bytes: number; shards: number }> {
  const h = opts.hparams ?? hovle2bHParams();
  const seed = opts.seed ?? 1;
  const shardBytes = opts.shardBytes ?? 4 * 1024 ** 3;
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, { shape: number[]; norm: boolean }>();
  for (const t of concreteTensors(h)) tensors.set(t.hf, { shape: t.hfShape, norm: t.def.role.endsWith('_norm') });
  for (const t of IGNORED_HF_TENSORS) tensors.set(t.hf, { shape: t.hfShape(h), norm: false });

  const shards: Array<Array<[string, { shape: number[]; norm: boolean }]>> = [[]];
  let inShard = 0;
  for (const entry of tensors) {
    const bytes = entry[1].shape.reduce((a, b) => a * b, 1) * 4;
    if (inShard > 0 && inShard + bytes > shardBytes) {
      shards.push([]);
      inShard = 0;
    }
    shards[shards.length - 1]!.push(entry);
    inShard += bytes;
  }
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (const [i, shard] of shards.entries()) {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let off = 0;
    for (const [name, t] of shard) {
      const n = t.shape.reduce((a, b) => a * b, 1) * 4;
      header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + n] };
      off += n;
      weightMap[name] = file;
    }
    let json = Buffer.from(JSON.stringify(header));
    json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
    const fh = await open(join(dir, file), 'w');
    try {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      await fh.write(Buffer.concat([len, json]));
      for (const [name, t] of shard) {
        const cols = t.shape[t.shape.length - 1]!;
        const rows = t.shape.reduce((a, b) => a * b, 1) / cols;
        const src = randomRows(name, rows, cols, seed, t.norm);
        const step = Math.max(1, Math.floor((16 * 1024 * 1024) / (cols * 4)));
        for (let r = 0; r < rows; r += step) await fh.write(await src.read(r, Math.min(step, rows - r)));
      }
    } finally {
      await fh.close();
    }
    total += 8 + json.length + off;
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  await writeFile(join(dir, 'config.json'), JSON.stringify(hfConfigFor(h), null, 2));
  for (const f of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json']) {
    await copyFile(join(opts.tokenizerDir, f), join(dir, f)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' || f === 'tokenizer.model' || f === 'tokenizer_config.json') throw err;
    });
  }
  return { bytes: total, shards: shards.length };
}
