// A seeded random-weight HoVLE with the real 2.6B shapes, written straight to GGUF, for
// performance and memory work (the real weights cannot be downloaded here). Its tokenizer comes
// from a checkpoint folder and is padded to the real vocabulary size; its answers are meaningless.
import { HovleError } from '../errors.js';
import { ggmlType } from '../gguf/ggml-types.js';
import type { GgufValue } from '../gguf/format.js';
import { type HovleHParams, totalBlocks } from '../model/hparams.js';
import { hparamsToMetadata } from '../model/metadata.js';
import { concreteTensors } from '../model/schema.js';
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
