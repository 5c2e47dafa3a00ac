// TypeScript view of what hovle.node exports (native/addon.cpp). Only src/ talks to it.
import type { SamplingOptions } from '../runtime/sampler.js';

/** build-info.json, also compiled into the addon (CMakeLists.txt writes both). */
export interface BuildInfo {
  version: string;
  nativeApi: number;
  llamaCommit: string;
  patches: string[];
  backends: Array<'cpu' | 'vulkan' | 'cuda' | 'metal'>;
  cpu: 'portable' | 'x86-64-v2' | 'native';
  /** /proc/cpuinfo flag names the compiled code needs. */
  cpuRequires: string[];
  buildType: string;
  platform: string;
  cudaArchitectures?: string;
  /** libjpeg-turbo (matches PIL exactly) or stb_image. */
  jpegDecoder: string;
}

export interface RawDevice {
  name: string;
  description: string;
  type: 'cpu' | 'gpu' | 'igpu' | 'accel' | 'other';
  backend: string;
  memoryFree: number;
  memoryTotal: number;
}

export interface RawSystemInfo {
  ggmlVersion: string;
  ggmlCommit: string;
  registeredBackends: string[];
  devices: RawDevice[];
  cpuFeatures: Record<string, string>;
}

export type ReferenceWeightType = 'f32' | 'f16' | 'q8_0' | 'q4_0';

export interface ReferenceGraphResult {
  output: Float32Array;
  /** [tokens, features], row-major. */
  shape: [number, number];
}

export interface NativeAddon extends NativeAddonConvert, NativeAddonRuntime, NativeAddonImage, NativeAddonTokenizer {
  /** JSON text of BuildInfo. */
  buildInfo: string;
  /** ggml's limit on the threads of one graph compute (GGML_MAX_N_THREADS). */
  maxComputeThreads: number;
  registerErrorClass(cls: new (code: never, message: string) => Error): void;
  systemInfo(): Promise<RawSystemInfo>;
  /** native/cpu_threads.h; `root` prefixes the /proc and /sys paths read (tests). */
  defaultComputeThreads(root?: string): number;
  /** native/memory.h HostMemoryAvailable, for tests; `root` as above. */
  hostMemoryAvailable(root?: string): { known: boolean; bytes: number; source: string };
  /**
   * native/memory.h: detaches the arrays' buffers so their memory is freed now rather than at
   * V8's next collection. Only for arrays the runtime made for itself and no caller can hold,
   * after every native call that read them has settled.
   */
  releaseBuffers(arrays: readonly Float32Array[]): void;
  /** native/cpu_compute.h: graph computes run on the shared CPU thread so far, for tests. */
  cpuComputeJobs(): number;
  runReferenceGraph(device: string, weightType: ReferenceWeightType, seed: number): Promise<ReferenceGraphResult>;
  Sampler: new (params: NativeSamplingParams, nVocab: number, state: number) => NativeSampler;
  CancelFlag: new () => NativeCancelFlag;
}

export interface GgmlTypeInfo {
  id: number;
  /** ggml's name, e.g. "f16", "q4_K". */
  name: string;
  blockSize: number;
  typeSize: number;
  isQuantized: boolean;
  /** ggml can turn this type into float32. */
  canRead: boolean;
  /** ggml's quantizer can produce this type (no importance matrix needed). */
  canWrite: boolean;
}

export interface ConvertRowsResult {
  data: Buffer;
  /** NaN/Inf values found in the source rows. */
  nonFinite: number;
}

export interface GgufInspection {
  version: number;
  alignment: number;
  dataOffset: number;
  keys: Array<{ key: string; type: string }>;
  /** ne has 4 entries (1 past the tensor's dimensions); offset is relative to dataOffset. */
  tensors: Array<{ name: string; type: number; ne: number[]; offset: number; size: number }>;
}

export interface NativeAddonConvert {
  /** ggml's own GGUF parser's view of a file. */
  ggufInspect(path: string): Promise<GgufInspection>;
  ggmlTypes(): GgmlTypeInfo[];
  convertRows(
    src: Uint8Array,
    srcType: number,
    dstType: number,
    rows: number,
    cols: number,
    threads: number,
  ): Promise<ConvertRowsResult>;
}

export interface NativeModelSpec {
  hparams: Record<string, unknown>;
  tensors: Array<{ name: string; role: string; block: number; dims: number[] }>;
  device: string;
  mmap: boolean;
  prefetch: boolean;
  gpuLayers: number;
  visionOnDevice: boolean;
  repack: boolean;
}

export interface NativeContextOptions {
  contextEmbedding: number;
  contextLlm: number;
  batchSize: number;
  threads: number;
  flashAttention: boolean;
  kvType: 'f32' | 'f16' | 'q8_0';
}

export interface NativeDecodeResult {
  picks: Int32Array;
  /** The sampler's state after each pick (zeros without a sampler). */
  states: Uint32Array;
  reason: 'maxSteps' | 'stopId' | 'contextFull' | 'stopped' | 'error';
  error?: Error;
}

/** native/cancel_flag.h: set once by cancel(), read by the calls given it between graphs. */
export interface NativeCancelFlag {
  cancel(): void;
}

export interface NativeContext {
  // Float32Array arguments are read in place on the model's thread until the Promise settles
  // (no copy of image-sized inputs): callers must not write to or transfer them meanwhile.
  /** Writes the tiles' rows into `into` (exactly tiles x rows per tile x hidden) and resolves with it. */
  vision(parts: Float32Array[], tiles: number, project: boolean, into: Float32Array, cancel?: NativeCancelFlag): Promise<Float32Array>;
  shuffleProject(rows: Float32Array, tiles: number): Promise<Float32Array>;
  embed(ids: Int32Array, imageRows: Float32Array | null): Promise<Float32Array>;
  llm(rows: Float32Array, outputRows: Int32Array | null, into?: Float32Array): Promise<Float32Array>;
  /**
   * embed + llm as one graph per micro-batch (not for images in "post" mode); returns the logits.
   * With `picks` (and no `into`), each output row's argmax is written there instead, computed in
   * the graph, and the returned array is empty. Once `cancel` is set, the call rejects with
   * ABORTED before its next micro-batch and leaves the cache as it was before it.
   */
  forward(ids: Int32Array, imageRows: Float32Array | null, outputRows: Int32Array | null, into?: Float32Array | null, picks?: Int32Array | null,
    cancel?: NativeCancelFlag): Promise<Float32Array>;
  /**
   * Generation as one task (native/decode_run.h): evaluates `first`, then each pick, for at most
   * maxSteps evaluations, ending after a pick in `stopIds`, at a full cache, or on stop(). The
   * picks are argmaxes taken in the graph, or with `sampler` (copied; the caller's is untouched)
   * drawn from each step's logits with `history` (the ids before `first`) and the picks as the
   * penalties' history. onPick gets every pick in order with the sampler's state after it,
   * possibly after the promise settles; the result lists them all. A failed step's error is
   * returned after the picks made before it.
   */
  decode(
    first: number, maxSteps: number, stopIds: Int32Array, onPick: (index: number, id: number, state: number) => void,
    sampler?: NativeSampler, history?: Int32Array,
  ): {
    promise: Promise<NativeDecodeResult>;
    stop(): void;
  };
  nPast(segment: 'embedding' | 'llm'): number;
  memory(): { kvBytes: number; computeBytes: number };
  truncate(segment: 'embedding' | 'llm', n: number): void;
  /** A new context with a copy of this one's cache. */
  fork(): Promise<NativeContext>;
  dispose(): void;
}

/** Sampling parameters as native/sampler.h reads them (absent: off): the bias as two arrays. */
export interface NativeSamplingParams extends Omit<SamplingOptions, 'logitBias' | 'seed'> {
  biasIds?: Int32Array;
  biasValues?: Float64Array;
}

/** native/sampler.h: the one implementation of token sampling. */
export interface NativeSampler {
  /** The next token; `history` is what the penalties look back on. Synchronous (1-2 ms at 92553 ids). */
  sample(logits: Float32Array, history: Int32Array): number;
  /** The generator's state (mulberry32), a 32-bit unsigned integer. */
  state: number;
  /** The pick is the plain argmax: temperature 0, no bias, no penalty. */
  readonly greedy: boolean;
}

export interface NativeModel {
  createContext(options: NativeContextOptions): Promise<NativeContext>;
  info(): { weightBytes: number; repackedBytes: number; device: string; deviceLayers: number };
  dispose(): void;
}

export interface NativeAddonRuntime {
  loadModel(
    path: string,
    spec: NativeModelSpec,
    onProgress?: (done: number, total: number) => void,
  ): { promise: Promise<NativeModel>; cancel: () => void };
}

export interface NativeImageInput {
  kind: 'encoded' | 'raw';
  data: Uint8Array;
  width?: number;
  height?: number;
  channels?: number;
  stride?: number;
  format?: string;
}

export interface NativePreprocessOptions {
  minTiles: number;
  maxTiles: number;
  tileSize: number;
  thumbnail: boolean;
  exifOrientation: boolean;
  maxPixels: number;
  mean: Float32Array;
  std: Float32Array;
}

export interface NativeAddonImage {
  preprocessImage(
    input: NativeImageInput,
    options: NativePreprocessOptions,
  ): Promise<{ grid: [number, number]; tiles: number; width: number; height: number; data: Float32Array }>;
  imageInfo(): { jpegDecoder: string };
  decodeImage(bytes: Uint8Array, options: { maxPixels: number; exifOrientation: boolean }): Promise<{ width: number; height: number; data: Buffer }>;
  targetRatios(min: number, max: number): Array<[number, number]>;
}

export interface NativeTokenizerSpec {
  tokens: string[];
  scores: Float32Array;
  types: Int32Array;
  added: Int32Array;
  bosId: number;
  unkId: number;
  addSpacePrefix: boolean;
  byteFallback: boolean;
  removeExtraWhitespaces: boolean;
}

export interface NativeAddonTokenizer {
  createTokenizer(spec: NativeTokenizerSpec): { encode(text: string, addBos: boolean): Int32Array; encodeAsync(text: string, addBos: boolean): Promise<Int32Array> };
}
