// HovleHParams <-> GGUF metadata, driven entirely by META_KEYS in schema.ts.
import { HovleError } from '../errors.js';
import type { GgufValue } from '../gguf/format.js';
import type { HovleHParams, SegmentHParams } from './hparams.js';
import { ARCH, META_KEYS } from './schema.js';

function getPath(obj: unknown, path: readonly string[]): unknown {
  return path.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], obj);
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let o = obj;
  for (const k of path.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
  o[path[path.length - 1]!] = value;
}

/** The hparams-backed metadata entries (general.architecture included). */
export function hparamsToMetadata(h: HovleHParams): Array<[string, GgufValue]> {
  const out: Array<[string, GgufValue]> = [['general.architecture', { type: 'string', value: ARCH }]];
  for (const def of META_KEYS) {
    if (!def.path) continue;
    const raw = getPath(h, def.path);
    const value = def.toGguf ? def.toGguf(raw) : raw;
    out.push([def.key, { type: def.kind, value } as GgufValue]);
  }
  return out;
}

/** Reads hyperparameters back; a missing or mistyped key is a GGUF_INVALID error naming it. */
export function hparamsFromMetadata(meta: ReadonlyMap<string, GgufValue>, path = 'model'): HovleHParams {
  const arch = meta.get('general.architecture');
  if (!arch || arch.type !== 'string' || arch.value !== ARCH) {
    throw new HovleError('GGUF_INVALID', `${path}: general.architecture is ${arch ? JSON.stringify(arch.value) : 'missing'}, expected "${ARCH}"`);
  }
  const h: Record<string, unknown> = {};
  for (const def of META_KEYS) {
    if (!def.path) continue;
    const v = meta.get(def.key);
    if (!v) throw new HovleError('GGUF_INVALID', `${path}: metadata key ${def.key} is missing`);
    if (v.type !== def.kind) throw new HovleError('GGUF_INVALID', `${path}: ${def.key} is ${v.type}, expected ${def.kind}`);
    let value: unknown = v.value;
    if (def.kind === 'arr_f32') value = Array.from(value as ArrayLike<number>);
    if (def.fromGguf) {
      try {
        value = def.fromGguf(value);
      } catch (err) {
        throw new HovleError('GGUF_INVALID', `${path}: ${def.key}: ${(err as Error).message}`);
      }
    }
    setPath(h, def.path, value);
  }
  checkHParams(h as unknown as HovleHParams, path);
  return h as unknown as HovleHParams;
}

// Far above any real HoVLE, low enough that the tensor list they imply stays small and every
// value fits the native side's int fields.
const LIMITS = { blocks: 1024, size: 1 << 17, vocab: 1 << 24, context: 0x7fffffff, imageSize: 4096, tiles: 256 };

/**
 * Rejects hyperparameters the runtime cannot use (zero or absurd sizes, heads that do not divide
 * the hidden size, non-finite floats...), as the converter does for config.json. A hostile file
 * must fail here: a block count of 4 billion would otherwise make the tensor list unbounded.
 */
export function checkHParams(h: HovleHParams, path = 'model'): void {
  const fail = (key: string, msg: string): never => {
    throw new HovleError('GGUF_INVALID', `${path}: ${key} ${msg}`);
  };
  const int = (key: string, v: number, max: number, min = 1) => {
    if (!Number.isInteger(v) || v < min || v > max) fail(key, `is ${v}, must be an integer in [${min}, ${max}]`);
  };
  const pos = (key: string, v: number) => {
    if (!Number.isFinite(v) || v <= 0) fail(key, `is ${v}, must be a positive finite number`);
  };
  int(`${ARCH}.vocab_size`, h.vocabSize, LIMITS.vocab);
  for (const [seg, p] of [['embedding', `${ARCH}.embedding.`], ['llm', `${ARCH}.`]] as const) {
    const s: SegmentHParams = h[seg];
    int(`${p}block_count`, s.blockCount, LIMITS.blocks);
    int(`${p}embedding_length`, s.embeddingLength, LIMITS.size);
    int(`${p}feed_forward_length`, s.feedForwardLength, LIMITS.size);
    int(`${p}attention.head_count`, s.headCount, s.embeddingLength);
    int(`${p}attention.head_count_kv`, s.headCountKv, s.headCount);
    int(`${p}context_length`, s.contextLength, LIMITS.context);
    if (s.embeddingLength % s.headCount !== 0) fail(`${p}attention.head_count`, `${s.headCount} does not divide the hidden size ${s.embeddingLength}`);
    if (s.headCount % s.headCountKv !== 0) fail(`${p}attention.head_count_kv`, `${s.headCountKv} does not divide ${s.headCount} heads`);
    if ((s.embeddingLength / s.headCount) % 2 !== 0) fail(`${p}attention.head_count`, 'gives an odd head dimension (RoPE needs pairs)');
    pos(`${p}attention.layer_norm_rms_epsilon`, s.rmsEps);
    pos(`${p}rope.freq_base`, s.ropeFreqBase);
    pos(`${p}rope.scaling.factor`, s.ropeScalingFactor);
  }
  if (h.embedding.embeddingLength !== h.llm.embeddingLength) {
    fail(`${ARCH}.embedding.embedding_length`, `${h.embedding.embeddingLength} differs from the language model's ${h.llm.embeddingLength}`);
  }
  const v = h.vision;
  const vk = `${ARCH}.vision.`;
  int(`${vk}image_size`, v.imageSize, LIMITS.imageSize);
  int(`${vk}patch_size`, v.patchSize, v.imageSize);
  if (v.imageSize % v.patchSize !== 0) fail(`${vk}patch_size`, `${v.patchSize} does not divide the image size ${v.imageSize}`);
  int(`${vk}num_channels`, v.numChannels, 3, 3);
  const grid = v.imageSize / v.patchSize;
  pos(`${vk}downsample_ratio`, v.downsampleRatio);
  if (v.downsampleRatio > 1 || !Number.isInteger(grid * v.downsampleRatio) || !Number.isInteger(1 / (v.downsampleRatio * v.downsampleRatio))) {
    fail(`${vk}downsample_ratio`, `${v.downsampleRatio} does not shuffle a ${grid}x${grid} patch grid evenly`);
  }
  int(`${vk}min_tiles`, v.minTiles, LIMITS.tiles);
  int(`${vk}max_tiles`, v.maxTiles, LIMITS.tiles, v.minTiles);
  // These become every image's defaults: bounded by what 256 tiles of 448 pixels take (~0.8 GB
  // of pixels and floats), so a file cannot make preprocessing allocate tens of GB.
  if ((v.maxTiles + 1) * v.imageSize ** 2 > (LIMITS.tiles + 1) * 448 ** 2) {
    fail(`${vk}max_tiles`, `${v.maxTiles} tiles of ${v.imageSize} pixels exceed the ${LIMITS.tiles + 1} x 448^2 pixels an image may be tiled into`);
  }
  for (const [key, arr] of [['image_mean', v.imageMean], ['image_std', v.imageStd]] as const) {
    if (arr.length !== 3 || !arr.every(Number.isFinite)) fail(vk + key, `must hold 3 finite numbers, not [${arr.join(', ')}]`);
  }
  if (!v.imageStd.every((x) => x > 0)) fail(`${vk}image_std`, 'must be positive');
}
