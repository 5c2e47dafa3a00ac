/** Hyperparameters of one decoder segment (the embedding module's layers, or the LLM's). */
export interface SegmentHParams {
  blockCount: number;
  embeddingLength: number;
  feedForwardLength: number;
  headCount: number;
  headCountKv: number;
  rmsEps: number;
  ropeFreqBase: number;
  /** 'none', or the HF rope_scaling type ('dynamic' = dynamic NTK, 'linear'). */
  ropeScalingType: 'none' | 'dynamic' | 'linear';
  ropeScalingFactor: number;
  contextLength: number;
}

export interface VisionHParams {
  imageSize: number;
  patchSize: number;
  numChannels: number;
  downsampleRatio: number;
  pixelShuffleLoc: 'pre' | 'post';
  normalizeEncoderOutput: boolean;
  minTiles: number;
  maxTiles: number;
  useThumbnail: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

export interface ChatHParams {
  /** Template name, e.g. "internlm2-chat". */
  template: string;
  systemMessage: string;
}

export interface HovleHParams {
  name: string;
  vocabSize: number;
  embedding: SegmentHParams;
  llm: SegmentHParams;
  vision: VisionHParams;
  chat: ChatHParams;
}

export type SegmentName = 'embedding' | 'llm';

export function headDim(s: SegmentHParams): number {
  return s.embeddingLength / s.headCount;
}

/** Total decoder layers (embedding module + LLM); GGUF numbers them blk.0 .. blk.N-1. */
export function totalBlocks(h: HovleHParams): number {
  return h.embedding.blockCount + h.llm.blockCount;
}

/** Patches per tile (the conv grid, before pixel shuffle; the HD sequence's rows per tile). */
export function patchesPerTile(v: VisionHParams): number {
  return (v.imageSize / v.patchSize) ** 2;
}

/** Image tokens per tile reaching the LLM (after pixel shuffle). */
export function tokensPerTile(v: VisionHParams): number {
  const grid = v.imageSize / v.patchSize;
  return Math.round(grid * v.downsampleRatio) ** 2;
}
