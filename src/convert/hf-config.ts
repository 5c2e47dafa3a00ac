// config.json of a HoVLE checkpoint -> HovleHParams. Every field the forward pass needs is read
// explicitly; a missing or unsupported one is a CHECKPOINT_INVALID error naming the field.
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';

import { HovleError } from '../errors.js';
import type { HovleHParams, SegmentHParams } from '../model/hparams.js';
import templates from './chat-templates.json' with { type: 'json' };
import { SUPPORTED_TEMPLATES } from '../session/template.js';

// InternVL's load_image normalisation (IMAGENET_MEAN / IMAGENET_STD); not part of config.json.
const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

type Json = Record<string, unknown>;

class Fields {
  constructor(private readonly obj: Json, private readonly prefix: string, private readonly file: string) {}

  fail(field: string, msg: string): never {
    throw new HovleError('CHECKPOINT_INVALID', `${this.file}: ${this.prefix}${field} ${msg}`);
  }
  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }
  raw(field: string): unknown {
    if (!(field in this.obj)) this.fail(field, 'is missing');
    return this.obj[field];
  }
  int(field: string, fallback?: number): number {
    if (!this.has(field) && fallback !== undefined) return fallback;
    const v = this.raw(field);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(field, `must be a positive integer, not ${JSON.stringify(v)}`);
    return v;
  }
  num(field: string, fallback?: number): number {
    if (!this.has(field) && fallback !== undefined) return fallback;
    const v = this.raw(field);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(field, `must be a positive number, not ${JSON.stringify(v)}`);
    return v;
  }
  bool(field: string, fallback?: boolean): boolean {
    if (!this.has(field) && fallback !== undefined) return fallback;
    const v = this.raw(field);
    if (typeof v !== 'boolean') this.fail(field, `must be true or false, not ${JSON.stringify(v)}`);
    return v;
  }
  str(field: string, fallback?: string): string {
    if (!this.has(field) && fallback !== undefined) return fallback;
    const v = this.raw(field);
    if (typeof v !== 'string') this.fail(field, `must be a string, not ${JSON.stringify(v)}`);
    return v;
  }
  sub(field: string): Fields {
    const v = this.raw(field);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, 'must be an object');
    return new Fields(v as Json, `${this.prefix}${field}.`, this.file);
  }
}

function segment(f: Fields): SegmentHParams {
  const headCount = f.int('num_attention_heads');
  const s: SegmentHParams = {
    blockCount: f.int('num_hidden_layers'),
    embeddingLength: f.int('hidden_size'),
    feedForwardLength: f.int('intermediate_size'),
    headCount,
    headCountKv: f.int('num_key_value_heads', headCount),
    rmsEps: f.num('rms_norm_eps'),
    ropeFreqBase: f.num('rope_theta'),
    ropeScalingType: 'none',
    ropeScalingFactor: 1,
    contextLength: f.int('max_position_embeddings'),
  };
  if (f.has('rope_scaling')) {
    const rs = f.sub('rope_scaling');
    const type = rs.str('type');
    if (type !== 'dynamic' && type !== 'linear') rs.fail('type', `'${type}' is not supported (dynamic or linear)`);
    s.ropeScalingType = type as 'dynamic' | 'linear';
    s.ropeScalingFactor = rs.num('factor');
  }
  if (f.str('hidden_act', 'silu') !== 'silu') f.fail('hidden_act', 'must be silu (SwiGLU)');
  if (s.embeddingLength % s.headCount !== 0) f.fail('hidden_size', `${s.embeddingLength} is not divisible by ${s.headCount} heads`);
  if (s.headCount % s.headCountKv !== 0) f.fail('num_key_value_heads', `${s.headCountKv} does not divide ${s.headCount} heads`);
  if ((s.embeddingLength / s.headCount) % 2 !== 0) f.fail('hidden_size', 'gives an odd head dimension (RoPE needs pairs)');
  return s;
}

/** Parses `<dir>/config.json`. */
export async function readHfConfig(dir: string, overrides: { name?: string; systemMessage?: string } = {}): Promise<HovleHParams> {
  const file = join(dir, 'config.json');
  let json: Json;
  try {
    json = JSON.parse(await readFile(file, 'utf8')) as Json;
  } catch (err) {
    throw new HovleError('CHECKPOINT_INVALID', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new HovleError('CHECKPOINT_INVALID', `${file} is not a JSON object`);
  const top = new Fields(json, '', file);
  const ec = top.sub('embedding_config');
  const lc = top.sub('llm_config');
  const embedding = segment(ec);
  const llm = segment(lc);

  if (lc.bool('bias', false)) lc.fail('bias', 'is true: HoVLE decoder blocks have no biases');
  if (lc.bool('tie_word_embeddings', false)) lc.fail('tie_word_embeddings', 'is true: HoVLE has an untied output head');
  if (embedding.embeddingLength !== llm.embeddingLength) {
    ec.fail('hidden_size', `${embedding.embeddingLength} differs from llm_config.hidden_size ${llm.embeddingLength}`);
  }
  if (ec.has('llm_hidden_size') && ec.int('llm_hidden_size') !== llm.embeddingLength) {
    ec.fail('llm_hidden_size', `differs from llm_config.hidden_size ${llm.embeddingLength}`);
  }
  if (!ec.bool('use_pixel_shuffle_proj', true)) ec.fail('use_pixel_shuffle_proj', 'is false: not supported');
  if (top.str('ps_version', 'v2') !== 'v2') top.fail('ps_version', 'must be v2 (the pixel-shuffle order HoVLE uses)');

  const vocabSize = lc.int('vocab_size');
  if (ec.has('llm_vocab_size') && ec.int('llm_vocab_size') !== vocabSize) {
    ec.fail('llm_vocab_size', `differs from llm_config.vocab_size ${vocabSize}`);
  }
  // The top-level values win; the embedding config's are read only without them.
  const imageSize = top.has('force_image_size') ? top.int('force_image_size') : ec.int('image_size');
  const patchSize = ec.int('patch_size');
  const downsampleRatio = top.has('downsample_ratio') ? top.num('downsample_ratio') : ec.num('downsample_ratio');
  if (imageSize % patchSize !== 0) ec.fail('patch_size', `${patchSize} does not divide image size ${imageSize}`);
  const grid = imageSize / patchSize;
  if (!Number.isInteger(grid * downsampleRatio) || !Number.isInteger(1 / (downsampleRatio * downsampleRatio))) {
    top.fail('downsample_ratio', `${downsampleRatio} does not shuffle a ${grid}x${grid} patch grid evenly`);
  }
  const loc = ec.str('pixel_shuffle_loc', 'pre');
  if (loc !== 'pre' && loc !== 'post') ec.fail('pixel_shuffle_loc', `must be "pre" or "post", not "${loc}"`);

  const template = top.str('template');
  // A GGUF whose template the runtime does not run would convert, then fail in ask, chat and serve.
  if (!SUPPORTED_TEMPLATES.includes(template as never)) {
    top.fail('template', `'${template}' is not a chat template hovle runs (${SUPPORTED_TEMPLATES.join(', ')})`);
  }
  const known = (templates as Record<string, { systemMessage: string } | string>)[template];
  if (overrides.systemMessage === undefined && (known === undefined || typeof known === 'string')) {
    top.fail('template', `'${template}' has no default system message the converter knows; pass one explicitly`);
  }
  const minTiles = top.int('min_dynamic_patch', 1);
  const maxTiles = top.int('max_dynamic_patch', 12);
  if (minTiles > maxTiles) top.fail('min_dynamic_patch', `${minTiles} exceeds max_dynamic_patch ${maxTiles}`);

  return {
    name: overrides.name ?? basename(resolve(dir).replace(/[\\/]hf$/, '')),
    vocabSize,
    embedding,
    llm,
    vision: {
      imageSize,
      patchSize,
      numChannels: ec.int('num_channels', 3),
      downsampleRatio,
      pixelShuffleLoc: loc as 'pre' | 'post',
      normalizeEncoderOutput: top.bool('normalize_encoder_output', false),
      minTiles,
      maxTiles,
      useThumbnail: top.bool('use_thumbnail', true),
      imageMean: IMAGENET_MEAN,
      imageStd: IMAGENET_STD,
    },
    chat: {
      template,
      systemMessage: overrides.systemMessage ?? (known as { systemMessage: string }).systemMessage,
    },
  };
}

/** The stop token of a known template (for tokenizer.ggml.eot_token_id). */
export function templateStopToken(template: string): string | undefined {
  const t = (templates as Record<string, { stopToken?: string } | string>)[template];
  return typeof t === 'object' ? t.stopToken : undefined;
}
