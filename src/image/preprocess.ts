// Image inputs -> normalised tiles, as InternVL's load_image does. The input descriptor is
// validated and copied here, on the JS thread (sharp's pattern); decoding, resizing and
// normalisation run natively on a worker thread.
import { open } from 'node:fs/promises';

import { HovleError } from '../errors.js';
import { loadAddon } from '../native/load.js';
import type { NativeImageInput } from '../native/addon.js';

export type RawPixelFormat = 'rgb' | 'rgba' | 'bgr' | 'bgra' | 'gray';
const CHANNELS: Record<RawPixelFormat, number> = { rgb: 3, rgba: 4, bgr: 3, bgra: 4, gray: 1 };

/** A camera frame used as-is (no encode/decode round trip). */
export interface RawFrame {
  data: Uint8Array;
  width: number;
  height: number;
  format: RawPixelFormat;
  /** Bytes per row (default width x channels). */
  stride?: number;
}

/**
 * A path, or `{ file }`, an encoded `{ buffer }` (JPEG, PNG, BMP, GIF first frame), or a
 * `{ raw }` frame.
 */
export type ImageInput = string | { file: string } | { buffer: Uint8Array } | { raw: RawFrame };

export interface PreprocessOptions {
  minTiles?: number;
  /** Default 12 (the published quick start), or the model's default when a model preprocesses. */
  maxTiles?: number;
  /** Append a whole-image thumbnail tile when there are several tiles. Default true. */
  thumbnail?: boolean;
  /** Apply the EXIF orientation of JPEGs (off by default, as in the reference). */
  exifOrientation?: boolean;
  /**
   * Refuse images with more pixels (checked before decoding); finite. Default 64 MP. Whatever it
   * says, no side may exceed 2^20 pixels, nor an encoded image 2^28 pixels (the decoders' limits).
   */
  maxPixels?: number;
  /** Refuse encoded files larger than this. Default 256 MiB. */
  maxBytes?: number;
  tileSize?: number;
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
}

export interface PreprocessedImage {
  /** Tile grid [columns, rows] (the thumbnail is extra). */
  grid: [number, number];
  /** Tiles including the thumbnail. */
  tiles: number;
  /** Source size in pixels (after EXIF orientation). */
  width: number;
  height: number;
  /** [tiles][3][tileSize][tileSize] normalised floats. */
  data: Float32Array;
  tileSize: number;
  /** Milliseconds spent, file reading included. */
  ms: number;
}

export const DEFAULT_MAX_PIXELS = 64_000_000;
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** The longest side any decoder here accepts (stb_image's limit; JPEG stops at 65500). */
const MAX_SIDE = 1 << 20;

/** maxPixels must be a finite positive number: anything else would disable the bomb check. */
function pixelLimit(v: number | undefined): number {
  const limit = v ?? DEFAULT_MAX_PIXELS;
  if (typeof limit !== 'number' || !(limit > 0) || !Number.isFinite(limit)) throw new HovleError('INVALID_ARGUMENT', 'maxPixels must be a positive finite number');
  return limit;
}

function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new HovleError('INVALID_ARGUMENT', `${name} must be a positive integer`);
  return v;
}

/**
 * The file's bytes, refused past maxBytes: from its size when it has one, and in any case as it
 * is read, so a FIFO or a device (whose size reads 0) cannot stream gigabytes into memory.
 * Every failure to read is IO_ERROR.
 */
async function readBounded(path: string, maxBytes: number): Promise<Buffer> {
  const ioError = (err: unknown) => new HovleError('IO_ERROR', `cannot read image ${path}: ${(err as Error).message}`, { cause: err });
  const file = await open(path, 'r').catch((err: unknown) => {
    throw ioError(err);
  });
  try {
    const info = await file.stat();
    if (info.isDirectory()) throw new HovleError('IO_ERROR', `cannot read image ${path}: it is a directory`);
    if (info.size > maxBytes) throw new HovleError('IMAGE_TOO_LARGE', `${path} is ${info.size} bytes, over maxBytes ${maxBytes}`);
    const chunks: Buffer[] = [];
    let total = 0;
    // A regular file in one read of its size plus one byte (to see it has not grown), then
    // 64 KiB at a time: the rest of a file that grew, or a stream.
    let next = Math.max(info.size + 1, 64 * 1024);
    for (;;) {
      const want = Math.min(next, maxBytes + 1 - total);
      next = 64 * 1024;
      const chunk = Buffer.allocUnsafe(want);
      const { bytesRead } = await file.read(chunk, 0, want, null);
      if (bytesRead === 0) break;
      chunks.push(bytesRead === want ? chunk : chunk.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) throw new HovleError('IMAGE_TOO_LARGE', `${path} holds more than maxBytes ${maxBytes}`);
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } catch (err) {
    throw err instanceof HovleError ? err : ioError(err);
  } finally {
    await file.close().catch(() => undefined);
  }
}

/** maxBytes must be a positive number (NaN would turn the check off); whole bytes count. */
function byteLimit(v: number | undefined): number {
  const limit = v ?? DEFAULT_MAX_BYTES;
  if (typeof limit !== 'number' || !(limit >= 1)) throw new HovleError('INVALID_ARGUMENT', 'maxBytes must be a positive number of bytes');
  return Math.min(Math.floor(limit), Number.MAX_SAFE_INTEGER);
}

/** mean and std: three finite numbers each, std's above 0 (a 0 divides every pixel by it). */
function channelStats(v: readonly number[] | undefined, fallback: readonly number[], name: string, positive: boolean): Float32Array {
  const a = v ?? fallback;
  if (!Array.isArray(a) && !ArrayBuffer.isView(a)) throw new HovleError('INVALID_ARGUMENT', `${name} must be three numbers`);
  const out = Float32Array.from(a as ArrayLike<number>);
  if (out.length !== 3 || !out.every((x) => Number.isFinite(x) && (!positive || x > 0))) {
    throw new HovleError('INVALID_ARGUMENT', `${name} must be three finite numbers${positive ? ' above 0' : ''}`);
  }
  return out;
}

async function describe(input: ImageInput, maxBytes: number): Promise<NativeImageInput> {
  if (typeof input === 'string' || (typeof input === 'object' && input !== null && 'file' in input)) {
    const path = typeof input === 'string' ? input : input.file;
    if (typeof path !== 'string' || path.length === 0) throw new HovleError('INVALID_ARGUMENT', 'file must be a non-empty path');
    return { kind: 'encoded', data: await readBounded(path, maxBytes) };
  }
  if (typeof input === 'object' && input !== null && 'buffer' in input) {
    if (!(input.buffer instanceof Uint8Array)) throw new HovleError('INVALID_ARGUMENT', 'buffer must be a Buffer or Uint8Array');
    if (input.buffer.length > maxBytes) throw new HovleError('IMAGE_TOO_LARGE', `the image buffer is over maxBytes ${maxBytes}`);
    if (input.buffer.length === 0) throw new HovleError('IMAGE_INVALID', 'the image buffer is empty');
    return { kind: 'encoded', data: input.buffer };
  }
  if (typeof input === 'object' && input !== null && 'raw' in input) {
    const r = input.raw;
    if (!r || !(r.data instanceof Uint8Array)) throw new HovleError('INVALID_ARGUMENT', 'raw.data must be a Buffer or Uint8Array');
    const channels = CHANNELS[r.format];
    if (!channels) throw new HovleError('INVALID_ARGUMENT', `raw.format must be one of ${Object.keys(CHANNELS).join(', ')}`);
    const width = positiveInt(r.width, 'raw.width');
    const height = positiveInt(r.height, 'raw.height');
    if (width > MAX_SIDE || height > MAX_SIDE) {
      throw new HovleError('IMAGE_TOO_LARGE', `the frame is ${width}x${height}; no side may exceed ${MAX_SIDE} pixels`);
    }
    const stride = r.stride === undefined ? width * channels : positiveInt(r.stride, 'raw.stride');
    if (stride < width * channels) throw new HovleError('INVALID_ARGUMENT', `raw.stride ${stride} is less than width x channels (${width * channels})`);
    const need = stride * (height - 1) + width * channels;
    if (r.data.length < need) {
      throw new HovleError('INVALID_ARGUMENT', `raw.data has ${r.data.length} bytes; a ${width}x${height} ${r.format} frame with stride ${stride} needs ${need}`);
    }
    return { kind: 'raw', data: r.data, width, height, channels, stride, format: r.format };
  }
  throw new HovleError('INVALID_ARGUMENT', 'image input must be a path, { file }, { buffer } or { raw }');
}

/** Decodes, tiles and normalises one image exactly as the reference preprocessing does. */
export async function preprocessImage(input: ImageInput, options: PreprocessOptions = {}): Promise<PreprocessedImage> {
  const started = performance.now();
  const minTiles = positiveInt(options.minTiles ?? 1, 'minTiles');
  const maxTiles = positiveInt(options.maxTiles ?? 12, 'maxTiles');
  if (maxTiles < minTiles || maxTiles > 256) throw new HovleError('INVALID_ARGUMENT', 'need minTiles <= maxTiles <= 256');
  const tileSize = positiveInt(options.tileSize ?? 448, 'tileSize');
  const maxPixels = pixelLimit(options.maxPixels);
  const mean = channelStats(options.mean, IMAGENET_MEAN, 'mean', false);
  const std = channelStats(options.std, IMAGENET_STD, 'std', true);
  const native = await describe(input, byteLimit(options.maxBytes));
  const r = await loadAddon().addon.preprocessImage(native, {
    minTiles,
    maxTiles,
    tileSize,
    thumbnail: options.thumbnail ?? true,
    exifOrientation: options.exifOrientation ?? false,
    maxPixels,
    mean,
    std,
  });
  return { ...r, grid: [r.grid[0], r.grid[1]], tileSize, ms: performance.now() - started };
}

/** InternVL's candidate grids for these limits, in the reference's order. */
export function candidateGrids(minTiles: number, maxTiles: number): Array<[number, number]> {
  return loadAddon().addon.targetRatios(positiveInt(minTiles, 'minTiles'), positiveInt(maxTiles, 'maxTiles'));
}

export interface DecodedImage {
  width: number;
  height: number;
  /** RGB, 3 bytes per pixel, row-major (alpha dropped as PIL's convert('RGB') does). */
  data: Buffer;
}

/** Decodes an encoded image (path, { file } or { buffer }) to RGB, with the same decoders and limits as preprocessImage. */
export async function decodeImage(input: ImageInput, options: Pick<PreprocessOptions, 'maxPixels' | 'maxBytes' | 'exifOrientation'> = {}): Promise<DecodedImage> {
  const maxPixels = pixelLimit(options.maxPixels);
  const native = await describe(input, byteLimit(options.maxBytes));
  if (native.kind !== 'encoded') throw new HovleError('INVALID_ARGUMENT', 'decodeImage takes an encoded image, not a raw frame');
  return loadAddon().addon.decodeImage(native.data, { maxPixels, exifOrientation: options.exifOrientation ?? false });
}
