// GGUF reader for the converter, `hovle quantize` and tests. It trusts nothing in the file:
// every count, length, dimension, type and offset is checked against limits and the file size
// before it is used, and every failure is a GGUF_INVALID HovleError naming what was wrong.
import { open, stat, type FileHandle } from 'node:fs/promises';

import { HovleError } from '../errors.js';
import { alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValueType, type GgufValue } from './format.js';
import { ggmlTypeById, tensorBytes, type GgmlTypeInfo } from './ggml-types.js';

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne0 first. */
  dims: number[];
  type: GgmlTypeInfo;
  /** Absolute file offset of the data. */
  offset: number;
  size: number;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
  fileSize: number;
}

// Limits far above any real model, low enough that a hostile header cannot make us allocate
// unbounded memory before the file-size checks catch it.
const MAX_TENSORS = 1 << 20;
const MAX_KV = 1 << 20;
const MAX_STRING = 1 << 26;
const MAX_ARRAY = 1 << 28;
const MAX_DIMS = 4;

class Cursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;

  constructor(private readonly fh: FileHandle, readonly size: number, private readonly path: string) {}

  fail(msg: string): never {
    throw new HovleError('GGUF_INVALID', `${this.path}: ${msg} (at byte ${this.pos})`);
  }

  private async ensure(n: number): Promise<void> {
    if (this.pos + n > this.size) this.fail(`file ends early: needs ${n} more bytes, ${this.size - this.pos} left`);
    if (this.pos >= this.bufStart && this.pos + n <= this.bufStart + this.buf.length) return;
    const want = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
    const b = Buffer.allocUnsafe(want);
    let bytesRead: number;
    try {
      ({ bytesRead } = await this.fh.read(b, 0, want, this.pos));
    } catch (err) {
      throw new HovleError('IO_ERROR', `${this.path}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    if (bytesRead < n) this.fail('short read');
    this.buf = b.subarray(0, bytesRead);
    this.bufStart = this.pos;
  }

  /** Skips `n` bytes without reading them. */
  skip(n: number): void {
    if (this.pos + n > this.size) this.fail(`file ends early: needs ${n} more bytes, ${this.size - this.pos} left`);
    this.pos += n;
  }

  async take(n: number): Promise<Buffer> {
    await this.ensure(n);
    const off = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(off, off + n);
  }

  async u8(): Promise<number> { return (await this.take(1)).readUInt8(0); }
  async i8(): Promise<number> { return (await this.take(1)).readInt8(0); }
  async u16(): Promise<number> { return (await this.take(2)).readUInt16LE(0); }
  async i16(): Promise<number> { return (await this.take(2)).readInt16LE(0); }
  async u32(): Promise<number> { return (await this.take(4)).readUInt32LE(0); }
  async i32(): Promise<number> { return (await this.take(4)).readInt32LE(0); }
  async f32(): Promise<number> { return (await this.take(4)).readFloatLE(0); }
  async f64(): Promise<number> { return (await this.take(8)).readDoubleLE(0); }
  async u64big(): Promise<bigint> { return (await this.take(8)).readBigUInt64LE(0); }
  async i64(): Promise<bigint> { return (await this.take(8)).readBigInt64LE(0); }

  /** A u64 that must fit a safe JS integer no larger than `max`. */
  async count(what: string, max: number): Promise<number> {
    const v = await this.u64big();
    if (v > BigInt(max)) this.fail(`${what} ${v} exceeds the limit ${max}`);
    return Number(v);
  }

  /**
   * The next string when its length and bytes are already buffered, read without an await;
   * undefined otherwise, and for anything str() refuses (so str() reports it). A vocabulary is
   * ~100k strings: an await per string (and per read inside it) made load() churn through
   * tens of MB of promises, which grew V8's young generation and stayed in the resident set.
   */
  strBuffered(): string | undefined {
    const off = this.pos - this.bufStart;
    if (off < 0 || off + 8 > this.buf.length || this.buf.readUInt32LE(off + 4) !== 0) return undefined;
    const n = this.buf.readUInt32LE(off);
    if (n > Math.min(MAX_STRING, this.size - this.pos) || off + 8 + n > this.buf.length) return undefined;
    const s = this.buf.toString('utf8', off + 8, off + 8 + n);
    if (Buffer.byteLength(s) !== n) return undefined;
    this.pos += 8 + n;
    return s;
  }

  async str(what: string): Promise<string> {
    const n = await this.count(`${what} length`, Math.min(MAX_STRING, this.size - this.pos));
    const b = await this.take(n);
    const s = b.toString('utf8');
    if (Buffer.byteLength(s) !== n) this.fail(`${what} is not valid UTF-8`);
    return s;
  }
}

const ELEM_SIZE: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.FLOAT64]: 8,
};

async function readScalar(c: Cursor, type: GgufValueType, key: string): Promise<number | bigint | boolean | string> {
  switch (type) {
    case GgufValueType.UINT8: return c.u8();
    case GgufValueType.INT8: return c.i8();
    case GgufValueType.UINT16: return c.u16();
    case GgufValueType.INT16: return c.i16();
    case GgufValueType.UINT32: return c.u32();
    case GgufValueType.INT32: return c.i32();
    case GgufValueType.FLOAT32: return c.f32();
    case GgufValueType.FLOAT64: return c.f64();
    case GgufValueType.UINT64: return c.u64big();
    case GgufValueType.INT64: return c.i64();
    case GgufValueType.BOOL: {
      const v = await c.u8();
      if (v > 1) c.fail(`${key}: bool value ${v}`);
      return v === 1;
    }
    case GgufValueType.STRING: return c.str(key);
    default: return c.fail(`${key}: unknown value type ${type}`);
  }
}

const KIND: Partial<Record<GgufValueType, string>> = {
  [GgufValueType.UINT8]: 'u8', [GgufValueType.INT8]: 'i8', [GgufValueType.UINT16]: 'u16',
  [GgufValueType.INT16]: 'i16', [GgufValueType.UINT32]: 'u32', [GgufValueType.INT32]: 'i32',
  [GgufValueType.FLOAT32]: 'f32', [GgufValueType.FLOAT64]: 'f64', [GgufValueType.UINT64]: 'u64',
  [GgufValueType.INT64]: 'i64', [GgufValueType.BOOL]: 'bool', [GgufValueType.STRING]: 'string',
};

async function readValue(c: Cursor, key: string): Promise<GgufValue> {
  const type = (await c.u32()) as GgufValueType;
  if (type !== GgufValueType.ARRAY) {
    const kind = KIND[type];
    if (!kind) c.fail(`${key}: unknown value type ${type}`);
    return { type: kind, value: await readScalar(c, type, key) } as GgufValue;
  }
  const elem = (await c.u32()) as GgufValueType;
  const n = await c.count(`${key} array length`, MAX_ARRAY);
  const size = ELEM_SIZE[elem];
  if (size !== undefined && n * size > c.size - c.pos) c.fail(`${key}: array of ${n} runs past the end of the file (truncated?)`);
  if (elem === GgufValueType.STRING) {
    if (n * 8 > c.size - c.pos) c.fail(`${key}: array of ${n} strings runs past the end of the file (truncated?)`);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(c.strBuffered() ?? (await c.str(`${key}[${i}]`)));
    return { type: 'arr_string', value: out };
  }
  if (elem === GgufValueType.FLOAT32 || elem === GgufValueType.INT32 || elem === GgufValueType.UINT32) {
    const arr = elem === GgufValueType.FLOAT32 ? new Float32Array(n) : elem === GgufValueType.INT32 ? new Int32Array(n) : new Uint32Array(n);
    // In chunks, not an await per element: a hostile array of 2^28 elements stays seconds long.
    for (let i = 0; i < n;) {
      const k = Math.min(n - i, 1 << 18);
      const b = await c.take(k * 4);
      if (elem === GgufValueType.FLOAT32) for (let j = 0; j < k; j++) arr[i + j] = b.readFloatLE(j * 4);
      else if (elem === GgufValueType.INT32) for (let j = 0; j < k; j++) arr[i + j] = b.readInt32LE(j * 4);
      else for (let j = 0; j < k; j++) arr[i + j] = b.readUInt32LE(j * 4);
      i += k;
    }
    const kind = elem === GgufValueType.FLOAT32 ? 'arr_f32' : elem === GgufValueType.INT32 ? 'arr_i32' : 'arr_u32';
    return { type: kind, value: arr } as GgufValue;
  }
  if (size === undefined) c.fail(`${key}: unsupported array element type ${elem}`);
  // Other element types are legal GGUF but unused by hovle: skipped (bounds checked above).
  c.skip(n * size);
  return { type: 'arr_i32', value: [] };
}

/** Reads and validates a GGUF file's header, metadata and tensor table (not the tensor data). */
export async function readGguf(path: string): Promise<GgufFile> {
  let fh: FileHandle;
  try {
    // Only regular files: opening a FIFO would block until a writer appears (a hang), and a
    // directory or device has no meaningful size.
    if (!(await stat(path)).isFile()) throw new Error('not a regular file');
    fh = await open(path, 'r');
  } catch (err) {
    throw new HovleError('IO_ERROR', `cannot open ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const { size } = await fh.stat();
    const c = new Cursor(fh, size, path);
    const magic = await c.u32();
    if (magic !== GGUF_MAGIC) c.fail('not a GGUF file (bad magic; an interrupted conversion leaves it zeroed)');
    const version = await c.u32();
    if (version !== 2 && version !== 3) c.fail(`unsupported GGUF version ${version}`);
    const nTensors = await c.count('tensor count', MAX_TENSORS);
    const nKv = await c.count('metadata count', MAX_KV);
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = await c.str('metadata key');
      if (metadata.has(key)) c.fail(`duplicate metadata key ${key}`);
      metadata.set(key, await readValue(c, key));
    }
    const alignValue = metadata.get('general.alignment');
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    if (alignValue) {
      const a = alignValue.type === 'u32' ? alignValue.value : 0;
      if (a === 0 || (a & (a - 1)) !== 0) c.fail('general.alignment must be a power-of-two u32');
      alignment = a;
    }
    const raw: Array<{ name: string; dims: number[]; type: GgmlTypeInfo; rel: number }> = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = await c.str('tensor name');
      if (names.has(name)) c.fail(`duplicate tensor ${name}`);
      names.add(name);
      const nDims = await c.u32();
      if (nDims < 1 || nDims > MAX_DIMS) c.fail(`${name}: ${nDims} dimensions`);
      const dims: number[] = [];
      let elements = 1;
      for (let d = 0; d < nDims; d++) {
        const v = await c.count(`${name} dimension`, Number.MAX_SAFE_INTEGER);
        if (v === 0) c.fail(`${name}: zero dimension`);
        dims.push(v);
        elements *= v;
        if (elements > size * 8) c.fail(`${name}: ${dims.join('x')} elements cannot fit in a ${size}-byte file`);
      }
      const typeId = await c.u32();
      const type = ggmlTypeById(typeId);
      if (!type) return c.fail(`${name}: unknown ggml type ${typeId}`);
      if (dims[0]! % type.blockSize !== 0) c.fail(`${name}: ne0 ${dims[0]} is not a multiple of ${type.name} blocks`);
      const rel = await c.count(`${name} offset`, Number.MAX_SAFE_INTEGER);
      if (rel > size) c.fail(`${name}: data offset ${rel} is past the end of the ${size}-byte file (truncated?)`);
      if (rel % alignment !== 0) c.fail(`${name}: offset ${rel} is not aligned to ${alignment}`);
      raw.push({ name, dims, type, rel });
    }
    const dataOffset = alignUp(c.pos, alignment);
    const tensors: GgufTensorInfo[] = raw.map((t) => ({
      name: t.name, dims: t.dims, type: t.type, offset: dataOffset + t.rel, size: tensorBytes(t.type, t.dims),
    }));
    const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
    for (let i = 0; i < byOffset.length; i++) {
      const t = byOffset[i]!;
      if (t.offset + t.size > size) {
        throw new HovleError('GGUF_INVALID', `${path}: tensor ${t.name} ends at byte ${t.offset + t.size}, but the file has ${size} (truncated?)`);
      }
      const next = byOffset[i + 1];
      if (next && t.offset + t.size > next.offset) {
        throw new HovleError('GGUF_INVALID', `${path}: tensors ${t.name} and ${next.name} overlap`);
      }
    }
    return { path, version, metadata, tensors, alignment, dataOffset, fileSize: size };
  } finally {
    await fh.close();
  }
}
