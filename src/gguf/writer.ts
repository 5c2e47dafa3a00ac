// Streaming GGUF writer: header, metadata and tensor table first, then each tensor's data in
// order, in chunks, so a model of any size is written with bounded memory. The file is built
// under a temporary name with a zeroed magic; only finish() writes "GGUF" and renames it, so an
// interrupted conversion never leaves a file that looks valid.
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

import { HovleError } from '../errors.js';
import { alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufValueType, SCALAR_CODES, type GgufValue } from './format.js';
import { tensorBytes, type GgmlTypeInfo } from './ggml-types.js';

export interface GgufTensorSpec {
  name: string;
  /** ggml order: ne0 (contiguous) first. */
  dims: number[];
  type: GgmlTypeInfo;
}

class ByteSink {
  private chunks: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

function scalar(sink: ByteSink, type: string, value: number | bigint | boolean | string): void {
  const b = Buffer.alloc(8);
  switch (type) {
    case 'u8': b.writeUInt8(value as number); sink.push(b.subarray(0, 1)); break;
    case 'i8': b.writeInt8(value as number); sink.push(b.subarray(0, 1)); break;
    case 'u16': b.writeUInt16LE(value as number); sink.push(b.subarray(0, 2)); break;
    case 'i16': b.writeInt16LE(value as number); sink.push(b.subarray(0, 2)); break;
    case 'u32': b.writeUInt32LE(value as number); sink.push(b.subarray(0, 4)); break;
    case 'i32': b.writeInt32LE(value as number); sink.push(b.subarray(0, 4)); break;
    case 'f32': b.writeFloatLE(value as number); sink.push(b.subarray(0, 4)); break;
    case 'f64': b.writeDoubleLE(value as number); sink.push(b); break;
    case 'u64': b.writeBigUInt64LE(value as bigint); sink.push(b); break;
    case 'i64': b.writeBigInt64LE(value as bigint); sink.push(b); break;
    case 'bool': b.writeUInt8(value ? 1 : 0); sink.push(b.subarray(0, 1)); break;
    case 'string': sink.str(value as string); break;
    default: throw new HovleError('INTERNAL', `unknown GGUF scalar type ${type}`);
  }
}

export function encodeValue(sink: ByteSink, v: GgufValue): void {
  if (v.type.startsWith('arr_')) {
    const elem = v.type.slice(4);
    const items = Array.from(v.value as ArrayLike<number | string>);
    sink.u32(GgufValueType.ARRAY);
    sink.u32(SCALAR_CODES[elem]!);
    sink.u64(items.length);
    for (const item of items) scalar(sink, elem, item);
    return;
  }
  sink.u32(SCALAR_CODES[v.type]!);
  scalar(sink, v.type, v.value as number | bigint | boolean | string);
}

/** The bytes before the tensor data: header, metadata, tensor table, padding. */
export function encodeHeader(
  metadata: ReadonlyArray<readonly [string, GgufValue]>,
  tensors: readonly GgufTensorSpec[],
  alignment: number,
  magic = GGUF_MAGIC,
): { header: Buffer; offsets: number[]; sizes: number[] } {
  const sink = new ByteSink();
  sink.u32(magic);
  sink.u32(GGUF_VERSION);
  sink.u64(tensors.length);
  sink.u64(metadata.length);
  const seen = new Set<string>();
  for (const [key, value] of metadata) {
    if (seen.has(key)) throw new HovleError('INTERNAL', `duplicate GGUF key ${key}`);
    seen.add(key);
    sink.str(key);
    encodeValue(sink, value);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (seen.has(`tensor:${t.name}`)) throw new HovleError('INTERNAL', `duplicate tensor ${t.name}`);
    seen.add(`tensor:${t.name}`);
    sink.str(t.name);
    sink.u32(t.dims.length);
    for (const d of t.dims) sink.u64(d);
    sink.u32(t.type.id);
    sink.u64(offset);
    offsets.push(offset);
    const size = tensorBytes(t.type, t.dims);
    sizes.push(size);
    offset = alignUp(offset + size, alignment);
  }
  const padded = alignUp(sink.length, alignment);
  sink.push(Buffer.alloc(padded - sink.length));
  return { header: sink.bytes(), offsets, sizes };
}

export class GgufWriter {
  private current = 0;
  private writtenInCurrent = 0;
  private position: number;
  private done = false;

  private constructor(
    private readonly fh: FileHandle,
    private readonly finalPath: string,
    private readonly tempPath: string,
    private readonly tensors: readonly GgufTensorSpec[],
    private readonly sizes: number[],
    private readonly alignment: number,
    headerLength: number,
    /** Total bytes the finished file will have. */
    readonly totalBytes: number,
  ) {
    this.position = headerLength;
  }

  static async create(
    path: string,
    metadata: ReadonlyArray<readonly [string, GgufValue]>,
    tensors: readonly GgufTensorSpec[],
    alignment = GGUF_DEFAULT_ALIGNMENT,
  ): Promise<GgufWriter> {
    const { header, sizes } = encodeHeader(metadata, tensors, alignment, 0);
    const tempPath = `${path}.partial-${process.pid}`;
    let fh: FileHandle;
    try {
      fh = await open(tempPath, 'w');
      await fh.write(header, 0, header.length, 0);
    } catch (err) {
      throw new HovleError('IO_ERROR', `cannot write ${tempPath}: ${(err as Error).message}`, { cause: err });
    }
    let total = header.length;
    for (const s of sizes) total = alignUp(total + s, alignment);
    return new GgufWriter(fh, path, tempPath, tensors, sizes, alignment, header.length, total);
  }

  /** Bytes in the file so far (header and padding included). */
  get bytesWritten(): number {
    return this.position;
  }

  /** Name of the tensor whose data write() expects next. */
  get nextTensor(): string | undefined {
    return this.tensors[this.current]?.name;
  }

  /** Appends data of the current tensor; moves to the next one when it is complete. */
  async write(chunk: Uint8Array): Promise<void> {
    const tensor = this.tensors[this.current];
    if (!tensor) throw new HovleError('INTERNAL', 'GGUF writer: more data than tensors');
    const size = this.sizes[this.current]!;
    if (this.writtenInCurrent + chunk.length > size) {
      throw new HovleError('INTERNAL', `GGUF writer: ${tensor.name} gets more than its ${size} bytes`);
    }
    await this.put(chunk);
    this.writtenInCurrent += chunk.length;
    if (this.writtenInCurrent === size) {
      const pad = alignUp(this.position, this.alignment) - this.position;
      if (pad > 0) await this.put(Buffer.alloc(pad));
      this.current++;
      this.writtenInCurrent = 0;
    }
  }

  private async put(chunk: Uint8Array): Promise<void> {
    let off = 0;
    try {
      while (off < chunk.length) {
        const { bytesWritten } = await this.fh.write(chunk, off, chunk.length - off, this.position);
        off += bytesWritten;
        this.position += bytesWritten;
      }
    } catch (err) {
      throw new HovleError('IO_ERROR', `cannot write ${this.tempPath}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Checks every tensor is complete, stamps the magic, and moves the file into place. */
  async finish(): Promise<void> {
    if (this.current !== this.tensors.length) {
      throw new HovleError('INTERNAL', `GGUF writer: tensor ${this.nextTensor} was not written`);
    }
    const magic = Buffer.alloc(4);
    magic.writeUInt32LE(GGUF_MAGIC);
    try {
      await this.fh.sync();
      await this.fh.write(magic, 0, 4, 0);
      await this.fh.sync();
      await this.fh.close();
      await rename(this.tempPath, this.finalPath);
    } catch (err) {
      throw new HovleError('IO_ERROR', `cannot finish ${this.finalPath}: ${(err as Error).message}`, { cause: err });
    }
    this.done = true;
  }

  /** Discards the partial file. Safe to call more than once, and after finish(). */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.fh.close().catch(() => undefined);
    await unlink(this.tempPath).catch(() => undefined);
  }
}
