// Byte positions of every field of a (valid) GGUF file, so tests can damage it precisely:
// truncate at a section boundary, overwrite a count, a length, a dimension or a value in place.
export interface KvField {
  key: string;
  /** Offset of the key's u64 length. */
  start: number;
  /** Offset of the u32 value type. */
  typeAt: number;
  type: number;
  /** Arrays: the u32 element type and the u64 count. */
  elemTypeAt?: number;
  countAt?: number;
  /** Offset of the value (scalar) or of the first element (array). */
  valueAt: number;
  end: number;
}

export interface TensorField {
  name: string;
  start: number;
  nDimsAt: number;
  dimsAt: number[];
  typeAt: number;
  offsetAt: number;
  end: number;
  dims: number[];
  type: number;
  /** Relative to the data section. */
  offset: number;
}

export interface GgufLayout {
  kvs: KvField[];
  tensors: TensorField[];
  /** End of the tensor table; the data section starts at the next multiple of the alignment. */
  infoEnd: number;
  dataStart: number;
  kv(key: string): KvField;
  tensor(name: string): TensorField;
}

const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function ggufLayout(b: Buffer, alignment = 32): GgufLayout {
  let p = 24;
  const nTensors = Number(b.readBigUInt64LE(8));
  const nKv = Number(b.readBigUInt64LE(16));
  const str = () => {
    const n = Number(b.readBigUInt64LE(p));
    const s = b.toString('utf8', p + 8, p + 8 + n);
    p += 8 + n;
    return s;
  };
  const skip = (type: number) => {
    if (type === 8) str();
    else p += SCALAR_SIZE[type]!;
  };
  const kvs: KvField[] = [];
  for (let i = 0; i < nKv; i++) {
    const start = p;
    const key = str();
    const typeAt = p;
    const type = b.readUInt32LE(p);
    p += 4;
    if (type === 9) {
      const elemTypeAt = p;
      const elem = b.readUInt32LE(p);
      const countAt = p + 4;
      const n = Number(b.readBigUInt64LE(p + 4));
      p += 12;
      const valueAt = p;
      for (let j = 0; j < n; j++) skip(elem);
      kvs.push({ key, start, typeAt, type, elemTypeAt, countAt, valueAt, end: p });
    } else {
      const valueAt = p;
      skip(type);
      kvs.push({ key, start, typeAt, type, valueAt, end: p });
    }
  }
  const tensors: TensorField[] = [];
  for (let i = 0; i < nTensors; i++) {
    const start = p;
    const name = str();
    const nDimsAt = p;
    const nDims = b.readUInt32LE(p);
    p += 4;
    const dimsAt: number[] = [];
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) {
      dimsAt.push(p);
      dims.push(Number(b.readBigUInt64LE(p)));
      p += 8;
    }
    const typeAt = p;
    const type = b.readUInt32LE(p);
    const offsetAt = p + 4;
    const offset = Number(b.readBigUInt64LE(p + 4));
    p += 12;
    tensors.push({ name, start, nDimsAt, dimsAt, typeAt, offsetAt, end: p, dims, type, offset });
  }
  const infoEnd = p;
  return {
    kvs,
    tensors,
    infoEnd,
    dataStart: Math.ceil(infoEnd / alignment) * alignment,
    kv: (key) => kvs.find((k) => k.key === key) ?? (() => { throw new Error(`no key ${key}`); })(),
    tensor: (name) => tensors.find((t) => t.name === name) ?? (() => { throw new Error(`no tensor ${name}`); })(),
  };
}
