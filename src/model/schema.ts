// THE table of HoVLE's GGUF layout: every metadata key and every tensor, with its source in the
// Hugging Face checkpoint, its shape rule and its meaning. The converter writes from it, the
// readers parse with it, and docs/gguf-layout.md is generated from it (scripts/gen-gguf-doc.mjs;
// a test fails when the committed doc differs).
import type { GgufValue, GgufValueKind } from '../gguf/format.js';
import { headDim, type HovleHParams, type SegmentHParams, type SegmentName } from './hparams.js';

export const ARCH = 'hovle';

/** The image tokens of HoVLE's prompt, written by the converter under hovle.image.*_token. */
export const IMAGE_TOKENS = { context: '<IMG_CONTEXT>', start: '<img>', end: '</img>' } as const;

// ------------------------------------------------------------------ metadata

export interface MetaKeyDef {
  key: string;
  kind: GgufValueKind;
  doc: string;
  /** Where the converter takes it from. */
  source: string;
  /** Path into HovleHParams; absent for keys written by other modules (tokenizer, general). */
  path?: readonly string[];
  /** Maps between the hparams value and the stored value when they differ. */
  toGguf?: (v: unknown) => GgufValue['value'];
  fromGguf?: (v: unknown) => unknown;
  optional?: boolean;
}

const SCALING_TYPES = ['none', 'linear', 'dynamic'] as const;

function segmentKeys(seg: SegmentName): MetaKeyDef[] {
  const p = seg === 'embedding' ? `${ARCH}.embedding.` : `${ARCH}.`;
  const cfg = seg === 'embedding' ? 'embedding_config' : 'llm_config';
  const what = seg === 'embedding' ? 'holistic embedding module' : 'language model';
  const k = (key: string, kind: GgufValueKind, field: keyof SegmentHParams, source: string, doc: string): MetaKeyDef => ({
    key: p + key, kind, path: [seg, field], source: `${cfg}.${source}`, doc: `${doc} (${what})`,
  });
  return [
    k('block_count', 'u32', 'blockCount', 'num_hidden_layers', 'decoder layers'),
    k('embedding_length', 'u32', 'embeddingLength', 'hidden_size', 'hidden size'),
    k('feed_forward_length', 'u32', 'feedForwardLength', 'intermediate_size', 'SwiGLU inner size'),
    k('attention.head_count', 'u32', 'headCount', 'num_attention_heads', 'query heads'),
    k('attention.head_count_kv', 'u32', 'headCountKv', 'num_key_value_heads', 'key/value heads (GQA)'),
    k('attention.layer_norm_rms_epsilon', 'f32', 'rmsEps', 'rms_norm_eps', 'RMSNorm epsilon'),
    k('rope.freq_base', 'f32', 'ropeFreqBase', 'rope_theta', 'RoPE theta (NeoX rotate-half over the whole head)'),
    {
      ...k('rope.scaling.type', 'string', 'ropeScalingType', 'rope_scaling.type', 'RoPE scaling: none, linear or dynamic (NTK)'),
      fromGguf: (v) => {
        if (!SCALING_TYPES.includes(v as never)) throw new Error(`unknown RoPE scaling type '${String(v)}'`);
        return v;
      },
    },
    k('rope.scaling.factor', 'f32', 'ropeScalingFactor', 'rope_scaling.factor', 'RoPE scaling factor (1 when none)'),
    k('context_length', 'u32', 'contextLength', 'max_position_embeddings', 'trained context; dynamic NTK applies beyond it'),
  ];
}

export const META_KEYS: readonly MetaKeyDef[] = [
  { key: 'general.architecture', kind: 'string', source: 'constant', doc: `always "${ARCH}"` },
  { key: 'general.name', kind: 'string', path: ['name'], source: 'checkpoint folder name, or --name', doc: 'model name' },
  { key: 'general.file_type', kind: 'u32', source: '--type', doc: "llama.cpp's file-type code of the mix (0 f32, 1 f16, 2 q4_0, 7 q8_0, 15 q4_k_m, 17 q5_k_m, 18 q6_k, 32 bf16)" },
  { key: 'general.quantization_version', kind: 'u32', source: 'constant', doc: 'ggml quantization format version (2), quantized files only', optional: true },
  { key: `${ARCH}.vocab_size`, kind: 'u32', path: ['vocabSize'], source: 'llm_config.vocab_size', doc: 'rows of token_embd and output' },
  ...segmentKeys('embedding'),
  ...segmentKeys('llm'),
  { key: `${ARCH}.vision.image_size`, kind: 'u32', path: ['vision', 'imageSize'], source: 'force_image_size / embedding_config.image_size', doc: 'tile size in pixels' },
  { key: `${ARCH}.vision.patch_size`, kind: 'u32', path: ['vision', 'patchSize'], source: 'embedding_config.patch_size', doc: 'conv patch size and stride' },
  { key: `${ARCH}.vision.num_channels`, kind: 'u32', path: ['vision', 'numChannels'], source: 'embedding_config.num_channels', doc: 'input channels (RGB)' },
  { key: `${ARCH}.vision.downsample_ratio`, kind: 'f32', path: ['vision', 'downsampleRatio'], source: 'downsample_ratio', doc: 'pixel shuffle ratio (0.5: 2x2 patches per token)' },
  {
    key: `${ARCH}.vision.pixel_shuffle_loc`, kind: 'string', path: ['vision', 'pixelShuffleLoc'], source: 'embedding_config.pixel_shuffle_loc',
    doc: '"pre": shuffle + MLP before the embedding layers (HoVLE); "post": embedding layers on the 1024-token HD sequence, shuffle + MLP after (HoVLE-HD)',
    fromGguf: (v) => {
      if (v !== 'pre' && v !== 'post') throw new Error(`pixel_shuffle_loc must be pre or post, not '${String(v)}'`);
      return v;
    },
  },
  { key: `${ARCH}.vision.normalize_encoder_output`, kind: 'bool', path: ['vision', 'normalizeEncoderOutput'], source: 'normalize_encoder_output', doc: 'L2-normalise the embedding module output over the hidden dimension' },
  { key: `${ARCH}.vision.min_tiles`, kind: 'u32', path: ['vision', 'minTiles'], source: 'min_dynamic_patch', doc: 'default minimum tiles per image' },
  { key: `${ARCH}.vision.max_tiles`, kind: 'u32', path: ['vision', 'maxTiles'], source: 'max_dynamic_patch', doc: 'default maximum tiles per image' },
  { key: `${ARCH}.vision.use_thumbnail`, kind: 'bool', path: ['vision', 'useThumbnail'], source: 'use_thumbnail', doc: 'append a whole-image thumbnail tile when an image has several tiles' },
  { key: `${ARCH}.vision.image_mean`, kind: 'arr_f32', path: ['vision', 'imageMean'], source: "InternVL's IMAGENET_MEAN (not in config.json)", doc: 'per-channel normalisation mean' },
  { key: `${ARCH}.vision.image_std`, kind: 'arr_f32', path: ['vision', 'imageStd'], source: "InternVL's IMAGENET_STD (not in config.json)", doc: 'per-channel normalisation std' },
  { key: `${ARCH}.chat.template`, kind: 'string', path: ['chat', 'template'], source: 'template', doc: 'conversation template name (internlm2-chat)' },
  { key: `${ARCH}.chat.system_message`, kind: 'string', path: ['chat', 'systemMessage'], source: "the template's default system message (src/convert/chat-templates.json), or --system-message", doc: 'default system message' },
];

/** Standard GGUF tokenizer keys (written by src/convert/tokenizer-meta.ts). */
export const TOKENIZER_KEYS: readonly MetaKeyDef[] = [
  { key: 'tokenizer.ggml.model', kind: 'string', source: 'constant', doc: '"llama": SentencePiece (BPE with byte fallback for InternLM2)' },
  { key: 'tokenizer.ggml.tokens', kind: 'arr_string', source: 'tokenizer.model pieces, then added tokens', doc: 'token text by id; ids past the SentencePiece vocab come from added_tokens_decoder' },
  { key: 'tokenizer.ggml.scores', kind: 'arr_f32', source: 'tokenizer.model', doc: 'piece scores (merge priority); 0 for added tokens' },
  { key: 'tokenizer.ggml.token_type', kind: 'arr_i32', source: 'tokenizer.model / tokenizer_config.json', doc: '1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte' },
  { key: 'tokenizer.ggml.bos_token_id', kind: 'u32', source: 'special_tokens_map / llm_config.bos_token_id', doc: 'BOS id (prepended once)' },
  { key: 'tokenizer.ggml.eos_token_id', kind: 'u32', source: 'special_tokens_map / llm_config.eos_token_id', doc: 'EOS id (</s>)' },
  { key: 'tokenizer.ggml.eot_token_id', kind: 'u32', source: 'the template stop token (<|im_end|>)', doc: 'end of turn: generation stops here' },
  { key: 'tokenizer.ggml.unknown_token_id', kind: 'u32', source: 'tokenizer.model', doc: 'UNK id' },
  { key: 'tokenizer.ggml.padding_token_id', kind: 'u32', source: 'special_tokens_map', doc: 'padding id', optional: true },
  { key: 'tokenizer.ggml.add_bos_token', kind: 'bool', source: 'tokenizer_config.add_bos_token', doc: 'prepend BOS' },
  { key: 'tokenizer.ggml.add_eos_token', kind: 'bool', source: 'tokenizer_config.add_eos_token', doc: 'append EOS' },
  { key: 'tokenizer.ggml.add_space_prefix', kind: 'bool', source: 'tokenizer.model normalizer_spec.add_dummy_prefix', doc: 'SentencePiece adds U+2581 before each chunk' },
  { key: `${ARCH}.tokenizer.added_tokens`, kind: 'arr_i32', source: 'tokenizer_config.added_tokens_decoder', doc: 'ids matched as whole strings before SentencePiece runs (leftmost, longest first)' },
  { key: `${ARCH}.tokenizer.byte_fallback`, kind: 'bool', source: 'tokenizer.model trainer_spec.byte_fallback', doc: 'unknown characters become <0xXX> byte pieces' },
  { key: `${ARCH}.tokenizer.remove_extra_whitespaces`, kind: 'bool', source: 'tokenizer.model normalizer_spec.remove_extra_whitespaces', doc: 'SentencePiece collapses runs of spaces before encoding' },
  { key: `${ARCH}.image.context_token`, kind: 'string', source: `constant ${IMAGE_TOKENS.context}`, doc: 'placeholder token replaced by image rows' },
  { key: `${ARCH}.image.start_token`, kind: 'string', source: `constant ${IMAGE_TOKENS.start}`, doc: 'token before an image block' },
  { key: `${ARCH}.image.end_token`, kind: 'string', source: `constant ${IMAGE_TOKENS.end}`, doc: 'token after an image block' },
];

// ------------------------------------------------------------------ tensors

export type TensorRole =
  | 'token_embd' | 'patch_embd' | 'patch_bias' | 'position_embd' | 'proj' | 'proj_bias'
  | 'attn_norm' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output'
  | 'ffn_norm' | 'ffn_gate' | 'ffn_up' | 'ffn_down' | 'output_norm' | 'output';

export interface TensorDef {
  /** GGUF name; per-layer names use {i}, the global block index (embedding layers first). */
  gguf: string;
  /** Checkpoint name; per-layer names use {i}, the index within its segment. */
  hf: string;
  role: TensorRole;
  /** Per-layer tensors belong to a segment. */
  segment?: SegmentName;
  /** Rows taken from a fused wqkv tensor. */
  split?: 'q' | 'k' | 'v';
  /** Checkpoint shape (PyTorch order). */
  hfShape: (h: HovleHParams) => number[];
  /** GGUF dims (ggml order, ne0 first); same element order as the checkpoint, no transposes. */
  dims: (h: HovleHParams) => number[];
  doc: string;
}

const seg = (h: HovleHParams, s: SegmentName): SegmentHParams => h[s];

function wqkvRows(s: SegmentHParams): number {
  return (s.headCountKv * (s.headCount / s.headCountKv + 2)) * headDim(s);
}

function layerTensors(s: SegmentName): TensorDef[] {
  const hf = s === 'embedding' ? 'embedding_model.encoder.{i}' : 'language_model.model.layers.{i}';
  const H = (h: HovleHParams) => seg(h, s).embeddingLength;
  const F = (h: HovleHParams) => seg(h, s).feedForwardLength;
  const Q = (h: HovleHParams) => seg(h, s).headCount * headDim(seg(h, s));
  const KV = (h: HovleHParams) => seg(h, s).headCountKv * headDim(seg(h, s));
  const wqkv = (h: HovleHParams) => [wqkvRows(seg(h, s)), H(h)];
  const t = (gguf: string, hfName: string, role: TensorRole, hfShape: TensorDef['hfShape'], dims: TensorDef['dims'], doc: string, split?: 'q' | 'k' | 'v'): TensorDef => ({
    gguf: `blk.{i}.${gguf}`, hf: `${hf}.${hfName}`, role, segment: s, hfShape, dims, doc, ...(split ? { split } : {}),
  });
  return [
    t('attn_norm.weight', 'attention_norm.weight', 'attn_norm', (h) => [H(h)], (h) => [H(h)], 'RMSNorm weight before attention'),
    t('attn_q.weight', 'attention.wqkv.weight', 'attn_q', wqkv, (h) => [H(h), Q(h)], 'query projection: the q rows of wqkv, heads in order', 'q'),
    t('attn_k.weight', 'attention.wqkv.weight', 'attn_k', wqkv, (h) => [H(h), KV(h)], 'key projection: the k rows of wqkv', 'k'),
    t('attn_v.weight', 'attention.wqkv.weight', 'attn_v', wqkv, (h) => [H(h), KV(h)], 'value projection: the v rows of wqkv', 'v'),
    t('attn_output.weight', 'attention.wo.weight', 'attn_output', (h) => [H(h), Q(h)], (h) => [Q(h), H(h)], 'attention output projection'),
    t('ffn_norm.weight', 'ffn_norm.weight', 'ffn_norm', (h) => [H(h)], (h) => [H(h)], 'RMSNorm weight before the FFN'),
    t('ffn_gate.weight', 'feed_forward.w1.weight', 'ffn_gate', (h) => [F(h), H(h)], (h) => [H(h), F(h)], 'SwiGLU gate (w1)'),
    t('ffn_up.weight', 'feed_forward.w3.weight', 'ffn_up', (h) => [F(h), H(h)], (h) => [H(h), F(h)], 'SwiGLU up (w3)'),
    t('ffn_down.weight', 'feed_forward.w2.weight', 'ffn_down', (h) => [H(h), F(h)], (h) => [F(h), H(h)], 'SwiGLU down (w2)'),
  ];
}

const EH = (h: HovleHParams) => h.embedding.embeddingLength;
const LH = (h: HovleHParams) => h.llm.embeddingLength;
const gridSide = (h: HovleHParams) => h.vision.imageSize / h.vision.patchSize;
const shuffleIn = (h: HovleHParams) => Math.round(EH(h) / (h.vision.downsampleRatio * h.vision.downsampleRatio));

export const GLOBAL_TENSORS: readonly TensorDef[] = [
  { gguf: 'token_embd.weight', hf: 'embedding_model.llm_text_embeddings.weight', role: 'token_embd', hfShape: (h) => [h.vocabSize, EH(h)], dims: (h) => [EH(h), h.vocabSize], doc: "the embedding module's text embedding (the one used at inference)" },
  { gguf: 'v.patch_embd.weight', hf: 'embedding_model.vision_embeddings.patch_embedding.weight', role: 'patch_embd', hfShape: (h) => [EH(h), h.vision.numChannels, h.vision.patchSize, h.vision.patchSize], dims: (h) => [h.vision.patchSize, h.vision.patchSize, h.vision.numChannels, EH(h)], doc: 'patch conv kernel [KW, KH, C_in, C_out], stride = patch size' },
  { gguf: 'v.patch_embd.bias', hf: 'embedding_model.vision_embeddings.patch_embedding.bias', role: 'patch_bias', hfShape: (h) => [EH(h)], dims: (h) => [EH(h)], doc: 'patch conv bias' },
  { gguf: 'v.position_embd.weight', hf: 'embedding_model.vision_embeddings.position_embedding', role: 'position_embd', hfShape: (h) => [1, gridSide(h) ** 2 + 1, EH(h)], dims: (h) => [EH(h), gridSide(h) ** 2 + 1], doc: 'learned position embedding; row 0 is the unused class slot, rows 1.. the patch grid row-major' },
  { gguf: 'v.proj.fc1.weight', hf: 'embedding_model.pixel_shuffle_proj.0.weight', role: 'proj', hfShape: (h) => [LH(h), shuffleIn(h)], dims: (h) => [shuffleIn(h), LH(h)], doc: 'pixel-shuffle projection, first Linear (then exact GELU)' },
  { gguf: 'v.proj.fc1.bias', hf: 'embedding_model.pixel_shuffle_proj.0.bias', role: 'proj_bias', hfShape: (h) => [LH(h)], dims: (h) => [LH(h)], doc: 'its bias' },
  { gguf: 'v.proj.fc2.weight', hf: 'embedding_model.pixel_shuffle_proj.2.weight', role: 'proj', hfShape: (h) => [LH(h), LH(h)], dims: (h) => [LH(h), LH(h)], doc: 'pixel-shuffle projection, second Linear' },
  { gguf: 'v.proj.fc2.bias', hf: 'embedding_model.pixel_shuffle_proj.2.bias', role: 'proj_bias', hfShape: (h) => [LH(h)], dims: (h) => [LH(h)], doc: 'its bias' },
  { gguf: 'output_norm.weight', hf: 'language_model.model.norm.weight', role: 'output_norm', hfShape: (h) => [LH(h)], dims: (h) => [LH(h)], doc: 'final RMSNorm (LLM eps)' },
  { gguf: 'output.weight', hf: 'language_model.output.weight', role: 'output', hfShape: (h) => [h.vocabSize, LH(h)], dims: (h) => [LH(h), h.vocabSize], doc: 'output head (untied)' },
];

export const LAYER_TENSORS: Readonly<Record<SegmentName, readonly TensorDef[]>> = {
  embedding: layerTensors('embedding'),
  llm: layerTensors('llm'),
};

/** Checkpoint tensors that exist but are not used at inference, so are not written. */
export const IGNORED_HF_TENSORS: ReadonlyArray<{ hf: string; hfShape: (h: HovleHParams) => number[]; why: string }> = [
  { hf: 'language_model.model.tok_embeddings.weight', hfShape: (h) => [h.vocabSize, LH(h)], why: "the LLM reads the embedding module's output, never its own token table" },
  { hf: 'embedding_model.vision_embeddings.class_embedding', hfShape: (h) => [1, 1, EH(h)], why: 'no class token in HoVLE inference' },
];

export interface ConcreteTensor {
  def: TensorDef;
  gguf: string;
  hf: string;
  /** Global block index for per-layer tensors. */
  block?: number;
  /** Index within the segment for per-layer tensors. */
  layer?: number;
  dims: number[];
  hfShape: number[];
}

/** Every tensor of a model with these hyperparameters, in file order. */
export function concreteTensors(h: HovleHParams): ConcreteTensor[] {
  const out: ConcreteTensor[] = [];
  const global = (g: string) => GLOBAL_TENSORS.find((t) => t.gguf === g)!;
  const push = (def: TensorDef, block?: number, layer?: number) =>
    out.push({
      def,
      gguf: block === undefined ? def.gguf : def.gguf.replace('{i}', String(block)),
      hf: layer === undefined ? def.hf : def.hf.replace('{i}', String(layer)),
      ...(block === undefined ? {} : { block, layer: layer! }),
      dims: def.dims(h),
      hfShape: def.hfShape(h),
    });
  for (const name of ['token_embd.weight', 'v.patch_embd.weight', 'v.patch_embd.bias', 'v.position_embd.weight',
    'v.proj.fc1.weight', 'v.proj.fc1.bias', 'v.proj.fc2.weight', 'v.proj.fc2.bias']) push(global(name));
  let block = 0;
  for (const s of ['embedding', 'llm'] as const) {
    for (let i = 0; i < h[s].blockCount; i++, block++) {
      for (const def of LAYER_TENSORS[s]) push(def, block, i);
    }
  }
  push(global('output_norm.weight'));
  push(global('output.weight'));
  return out;
}

/**
 * Checkpoint row of each output row for tensors split out of wqkv. wqkv rows are grouped per KV
 * head h: [q heads h*g .. h*g+g-1, k_h, v_h], head_dim rows each, g = heads / kv_heads.
 */
export function wqkvRowMap(s: SegmentHParams, part: 'q' | 'k' | 'v'): (row: number) => number {
  const hd = headDim(s);
  const g = s.headCount / s.headCountKv;
  return (row) => {
    const head = Math.floor(row / hd);
    const within = row % hd;
    if (part === 'q') return ((Math.floor(head / g) * (g + 2) + (head % g)) * hd) + within;
    return ((head * (g + 2) + g + (part === 'v' ? 1 : 0)) * hd) + within;
  };
}
