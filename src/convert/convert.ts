// `hovle convert`: a Hugging Face HoVLE checkpoint -> one self-describing GGUF file.
// Everything is validated (config, tokenizer, every tensor's presence, dtype and shape) before
// the first byte is written; then tensors stream through model-writer.ts.
import { HovleError } from '../errors.js';
import type { GgufValue } from '../gguf/format.js';
import { ggmlType } from '../gguf/ggml-types.js';
import { type HovleHParams, totalBlocks } from '../model/hparams.js';
import { hparamsToMetadata } from '../model/metadata.js';
import { concreteTensors, IGNORED_HF_TENSORS, wqkvRowMap } from '../model/schema.js';
import { fileRows } from './file-rows.js';
import { readHfConfig, templateStopToken } from './hf-config.js';
import { writeModel, type PlannedTensor, type WriteOptions, type WriteResult } from './model-writer.js';
import { openSafetensors, SAFETENSORS_DTYPES } from './safetensors.js';
import { readTokenizer } from './tokenizer-meta.js';
import { FILE_TYPE_CODE, FILE_TYPES, isQuantizedFileType, tensorType, type FileType } from './type-policy.js';

export interface ConvertOptions extends WriteOptions {
  type?: FileType;
  /** general.name (default: the checkpoint folder's name). */
  name?: string;
  /** Overrides the template's default system message. */
  systemMessage?: string;
}

export interface ConvertResult extends WriteResult {
  hparams: HovleHParams;
  type: FileType;
  /** GGUF tensor name -> ggml type name. */
  tensorTypes: Record<string, string>;
}

/** general.* keys that depend on the file type. */
export function fileTypeMetadata(type: FileType): Array<[string, GgufValue]> {
  const out: Array<[string, GgufValue]> = [['general.file_type', { type: 'u32', value: FILE_TYPE_CODE[type] }]];
  if (isQuantizedFileType(type)) out.push(['general.quantization_version', { type: 'u32', value: 2 }]);
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export async function convertCheckpoint(dir: string, outPath: string, options: ConvertOptions = {}): Promise<ConvertResult> {
  const type = options.type ?? 'f16';
  if (!FILE_TYPES.includes(type)) {
    throw new HovleError('INVALID_ARGUMENT', `type must be one of ${FILE_TYPES.join(', ')}, not '${String(type)}'`);
  }
  const hparams = await readHfConfig(dir, {
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(options.systemMessage !== undefined ? { systemMessage: options.systemMessage } : {}),
  });
  const tokenizer = await readTokenizer(dir, hparams.vocabSize, templateStopToken(hparams.chat.template));
  const st = await openSafetensors(dir);

  const expected = concreteTensors(hparams);
  const used = new Set<string>();
  for (const t of expected) {
    const src = st.get(t.hf);
    if (!src) throw new HovleError('CHECKPOINT_INVALID', `tensor ${t.hf} is missing from the checkpoint (needed for ${t.gguf})`);
    if (!sameShape(src.shape, t.hfShape)) {
      throw new HovleError('CHECKPOINT_INVALID', `tensor ${t.hf} has shape [${src.shape.join(', ')}], but config.json implies [${t.hfShape.join(', ')}]`);
    }
    used.add(t.hf);
  }
  for (const ig of IGNORED_HF_TENSORS) {
    const src = st.get(ig.hf);
    if (!src) continue;
    if (!sameShape(src.shape, ig.hfShape(hparams))) {
      throw new HovleError('CHECKPOINT_INVALID', `tensor ${ig.hf} has shape [${src.shape.join(', ')}], but config.json implies [${ig.hfShape(hparams).join(', ')}]`);
    }
    used.add(ig.hf);
  }
  const unknown = [...st.keys()].filter((n) => !used.has(n));
  if (unknown.length > 0) {
    throw new HovleError('CHECKPOINT_INVALID', `the checkpoint has tensors that a HoVLE model does not have: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}`);
  }

  const nBlocks = totalBlocks(hparams);
  const tensorTypes: Record<string, string> = {};
  const planned: PlannedTensor[] = expected.map((t) => {
    const src = st.get(t.hf)!;
    const srcType = ggmlType(SAFETENSORS_DTYPES[src.dtype].ggml);
    const cols = t.dims[0]!;
    const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
    const dst = ggmlType(tensorType(type, { role: t.def.role, nDims: t.dims.length, cols, nBlocks, ...(t.block !== undefined ? { block: t.block } : {}) }));
    tensorTypes[t.gguf] = dst.name;
    const seg = t.def.segment ? hparams[t.def.segment] : undefined;
    return {
      name: t.gguf,
      dims: t.dims,
      type: dst,
      source: fileRows({
        path: src.file,
        offset: src.offset,
        type: srcType,
        rowBytes: cols * SAFETENSORS_DTYPES[src.dtype].bytes,
        rows,
        cols,
        ...(t.def.split && seg ? { rowMap: wqkvRowMap(seg, t.def.split) } : {}),
        errorCode: 'CHECKPOINT_INVALID',
      }),
    };
  });

  const metadata: Array<[string, GgufValue]> = [
    ...hparamsToMetadata(hparams),
    ...fileTypeMetadata(type),
    ...tokenizer.metadata,
  ];
  const result = await writeModel(outPath, metadata, planned, options);
  return { ...result, hparams, type, tensorTypes };
}
