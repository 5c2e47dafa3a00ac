// `hovle quantize in.gguf out.gguf TYPE`: re-types a HoVLE GGUF with the same policy as convert.
import { HovleError } from '../errors.js';
import { readGguf } from '../gguf/reader.js';
import { ggmlType, rowBytes } from '../gguf/ggml-types.js';
import type { GgufValue } from '../gguf/format.js';
import { totalBlocks } from '../model/hparams.js';
import { hparamsFromMetadata } from '../model/metadata.js';
import { concreteTensors } from '../model/schema.js';
import { fileTypeMetadata } from './convert.js';
import { fileRows } from './file-rows.js';
import { writeModel, type PlannedTensor, type WriteOptions, type WriteResult } from './model-writer.js';
import { FILE_TYPES, tensorType, type FileType } from './type-policy.js';

export interface QuantizeOptions extends WriteOptions {
  /** Allow re-quantizing tensors that are already quantized (loses accuracy twice). */
  allowRequantize?: boolean;
}

export async function quantizeGguf(inPath: string, outPath: string, type: FileType, options: QuantizeOptions = {}): Promise<WriteResult & { tensorTypes: Record<string, string> }> {
  if (!FILE_TYPES.includes(type)) {
    throw new HovleError('INVALID_ARGUMENT', `type must be one of ${FILE_TYPES.join(', ')}, not '${String(type)}'`);
  }
  const file = await readGguf(inPath);
  const hparams = hparamsFromMetadata(file.metadata, inPath);
  const expected = concreteTensors(hparams);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  if (byName.size !== expected.length) {
    throw new HovleError('GGUF_INVALID', `${inPath} has ${byName.size} tensors, a HoVLE model with its hyperparameters has ${expected.length}`);
  }
  const nBlocks = totalBlocks(hparams);
  const tensorTypes: Record<string, string> = {};
  const planned: PlannedTensor[] = expected.map((e) => {
    const t = byName.get(e.gguf);
    if (!t) throw new HovleError('GGUF_INVALID', `${inPath} lacks tensor ${e.gguf}`);
    if (t.dims.join(',') !== e.dims.join(',')) {
      throw new HovleError('GGUF_INVALID', `${inPath}: ${e.gguf} is ${t.dims.join('x')}, expected ${e.dims.join('x')}`);
    }
    const dst = ggmlType(tensorType(type, { role: e.def.role, nDims: e.dims.length, cols: e.dims[0]!, nBlocks, ...(e.block !== undefined ? { block: e.block } : {}) }));
    if (t.type.isQuantized && t.type.id !== dst.id && !options.allowRequantize) {
      throw new HovleError('INVALID_ARGUMENT', `${e.gguf} is already ${t.type.name}; re-quantizing to ${dst.name} compounds the error. Convert from the checkpoint, or allow it explicitly (--allow-requantize).`);
    }
    if (!t.type.canRead) throw new HovleError('GGUF_INVALID', `${e.gguf}: ggml cannot read type ${t.type.name}`);
    tensorTypes[e.gguf] = dst.name;
    const cols = e.dims[0]!;
    return {
      name: e.gguf,
      dims: e.dims,
      type: dst,
      source: fileRows({ path: inPath, offset: t.offset, type: t.type, rowBytes: rowBytes(t.type, cols), rows: t.size / rowBytes(t.type, cols), cols, errorCode: 'GGUF_INVALID' }),
    };
  });
  // Same keys in the same order as a direct conversion, so the two give identical files.
  if (!file.metadata.has('general.file_type')) throw new HovleError('GGUF_INVALID', `${inPath}: general.file_type is missing`);
  const metadata: Array<[string, GgufValue]> = [];
  for (const [k, v] of file.metadata) {
    if (k === 'general.file_type') metadata.push(...fileTypeMetadata(type));
    else if (k !== 'general.quantization_version' && k !== 'general.alignment') metadata.push([k, v]);
  }
  const result = await writeModel(outPath, metadata, planned, options);
  return { ...result, tensorTypes };
}
