// Which ggml type each tensor gets for a requested file type: the one place this rule lives.
// Modelled on llama.cpp's llama_tensor_get_type for the same mixes.
import type { TensorRole } from '../model/schema.js';

export const FILE_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k_m', 'q5_k_m', 'q6_k'] as const;
export type FileType = (typeof FILE_TYPES)[number];

/** llama.cpp's llama_ftype codes, stored as general.file_type. */
export const FILE_TYPE_CODE: Record<FileType, number> = {
  f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_k_m: 15, q5_k_m: 17, q6_k: 18, bf16: 32,
};

const BASE: Record<FileType, string> = {
  f32: 'f32', f16: 'f16', bf16: 'bf16', q8_0: 'q8_0', q4_0: 'q4_0', q4_k_m: 'q4_K', q5_k_m: 'q5_K', q6_k: 'q6_K',
};

/** When a row length does not fill the type's blocks (as in the tiny test models). */
const FALLBACK: Record<string, string> = { q4_K: 'q5_0', q5_K: 'q5_1', q6_K: 'q8_0', q8_0: 'f16', q4_0: 'f16', q5_0: 'f16', q5_1: 'f16' };
const BLOCK: Record<string, number> = { q4_K: 256, q5_K: 256, q6_K: 256, q8_0: 32, q4_0: 32, q5_0: 32, q5_1: 32 };

export function isQuantizedFileType(ft: FileType): boolean {
  return !['f32', 'f16', 'bf16'].includes(ft);
}

/** llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between. */
function useMoreBits(layer: number, nLayers: number): boolean {
  return layer < nLayers / 8 || layer >= (7 * nLayers) / 8 || (layer - Math.floor(nLayers / 8)) % 3 === 2;
}

export interface TensorTypeQuery {
  role: TensorRole;
  /** Number of dimensions of the tensor. */
  nDims: number;
  /** Row length (ne0). */
  cols: number;
  /** Global block index (0 .. nBlocks-1) for per-layer tensors. */
  block?: number;
  nBlocks: number;
}

/**
 * The rule, in order:
 * 1. 1-D tensors (norm weights, biases) stay f32.
 * 2. The patch conv kernel and position embedding stay f32 in f32 files, f16 otherwise.
 * 3. In quantized mixes the output head gets q6_K (q8_0 files keep q8_0), as llama.cpp does.
 * 4. q4_k_m and q5_k_m give attn_v and ffn_down q6_K in the use_more_bits layers.
 * 5. Everything else gets the mix's base type.
 * 6. A row length that does not fill the chosen type's blocks falls back (q4_K -> q5_0,
 *    q5_K -> q5_1, q6_K -> q8_0, 32-blocks -> f16), again until it fits.
 */
export function tensorType(ft: FileType, q: TensorTypeQuery): string {
  let t: string;
  if (q.nDims === 1) t = 'f32';
  else if (q.role === 'patch_embd' || q.role === 'position_embd') t = ft === 'f32' ? 'f32' : 'f16';
  else if (q.role === 'output' && isQuantizedFileType(ft) && ft !== 'q8_0') t = 'q6_K';
  else if ((ft === 'q4_k_m' || ft === 'q5_k_m') && (q.role === 'attn_v' || q.role === 'ffn_down') && q.block !== undefined && useMoreBits(q.block, q.nBlocks)) t = 'q6_K';
  else t = BASE[ft];
  while (BLOCK[t] !== undefined && q.cols % BLOCK[t]! !== 0) t = FALLBACK[t]!;
  return t;
}
