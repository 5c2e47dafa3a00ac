// Low-level runtime: load a HoVLE GGUF, create contexts (KV caches), evaluate token sequences
// with images. The generation API (sessions, sampling, chat) is built on this.
import { HovleError } from '../errors.js';
import { readGguf } from '../gguf/reader.js';
import { patchesPerTile, tokensPerTile, type HovleHParams } from '../model/hparams.js';
import { hparamsFromMetadata } from '../model/metadata.js';
import { ARCH, concreteTensors, IMAGE_TOKENS } from '../model/schema.js';
import type { NativeCancelFlag, NativeContext, NativeModel } from '../native/addon.js';
import { loadAddon } from '../native/load.js';
import { defaultComputeThreads, maxComputeThreads } from '../system-info.js';

import { preprocessImage, type ImageInput, type PreprocessOptions } from '../image/preprocess.js';
import { argmax } from './argmax.js';
import { DecodeRun, type DecodeOptions } from './decode-run.js';
import { Sampler } from './sampler.js';
import { Tokenizer } from './tokenizer.js';

export type Backend = 'cpu' | 'vulkan' | 'cuda' | 'metal';

export interface LoadModelOptions {
  /** Where the weights go: a backend (its first device) or a ggml device name ("Vulkan0"). Default cpu. */
  backend?: Backend;
  device?: string;
  /** Map CPU-resident weights from the file instead of copying them. Default true. */
  mmap?: boolean;
  /**
   * Read the mapped weights in during load (with progress and abort), as llama.cpp does, so
   * that the first answer does not wait for the disk. Default true; false makes load() return
   * once the file is mapped and leaves the reading to the first computes that touch each page.
   */
  prefetch?: boolean;
  /**
   * Decoder blocks (of the 32, counted from the top) whose weights and KV cache go on the
   * device; the rest stay on the CPU. Default: all. The output head goes along only when all
   * blocks do; the token table always stays on the CPU.
   */
  gpuLayers?: number;
  /** Put the image front end (patch/position embeddings, projection) on the device. Default true. */
  visionOnDevice?: boolean;
  /**
   * Store CPU matmul weights in ggml's repacked layouts where the CPU has kernels for them
   * (Q4_0, Q4_K, IQ4_NL on AVX2; more types on Arm), as llama.cpp does. Faster, but those
   * weights are copied into memory instead of mapped from the file. Default true.
   *
   * Weights copied into memory (repacked ones, all CPU weights with mmap: false) and those
   * placed on a device are checked against the memory available before loading, as contexts are
   * (createContext): OUT_OF_MEMORY / OUT_OF_DEVICE_MEMORY with the bytes needed and available.
   */
  repack?: boolean;
  signal?: AbortSignal;
  /** Fractions of the weights placed, rising to 1, which is reported before load() resolves. */
  onProgress?: (fraction: number) => void;
}

export interface ContextOptions {
  /** Positions the language model's KV cache holds. Default 4096. */
  contextSize?: number;
  /** Positions for the embedding module's cache; defaults to contextSize ("pre") or 4x it ("post"). */
  embeddingContextSize?: number;
  /** KV cache element type. Default f16; f32 matches the reference most closely. */
  kvType?: 'f32' | 'f16' | 'q8_0';
  /**
   * Fused attention kernel (required for a q8_0 cache). Default true: as fast as the separate
   * matmul + softmax on the CPU, and it never materialises the [positions x batch x heads]
   * score matrix (about 100 MB at a 2048-token context). Off the CPU it is always on.
   */
  flashAttention?: boolean;
  /**
   * Micro-batch size for prefill. Default 256 when every decoder block runs on the CPU, 512 when
   * some run on a device. On the CPU prefill is compute-bound, so half the batch costs no speed
   * (measured at Q4_K_M, 2 threads: 26.4 against 25.1 tok/s, interleaved, within the noise) and
   * halves the compute buffer (44 -> 22 MB at a 1100-position context), which is peak RSS; a GPU
   * wants the larger batch to fill its cores.
   */
  batchSize?: number;
  /** CPU threads. Default: one per physical core (defaultComputeThreads()). At most maxComputeThreads() (512, ggml's limit). */
  threads?: number;
}

/** Positions a context may hold (the native side counts them in 32-bit integers). */
const MAX_POSITIONS = 2 ** 31 - 1;

const BACKEND_DEVICE_PREFIX: Record<Backend, string> = { cpu: 'CPU', vulkan: 'Vulkan', cuda: 'CUDA', metal: 'MTL' };

export interface TokenInfo {
  imageContextId: number;
  /** The tokens around each image's <IMG_CONTEXT> run in the prompt (`<img>` and `</img>` in HoVLE). */
  imageStartId: number;
  imageEndId: number;
  bosId: number;
  eotId: number;
  tokens: string[];
}

export class HovleModel {
  private native: NativeModel | undefined;

  private constructor(
    native: NativeModel,
    readonly path: string,
    readonly hparams: HovleHParams,
    readonly vocab: TokenInfo,
    readonly device: string,
    /** Text <-> ids with the model's vocabulary (exact to the reference tokenizer). */
    readonly tokenizer: Tokenizer,
  ) {
    this.native = native;
  }

  /**
   * Loads a HoVLE GGUF. Everything in the file is checked before it is used, and every problem
   * is a GGUF_INVALID HovleError (IO_ERROR when the file cannot be read): the header, metadata
   * and tensor table (counts, lengths, types, dimensions, offsets, in JS and again natively
   * before ggml parses it), the hyperparameters (sizes, divisibility, finite floats), the tensor
   * list against them, and NaN/Inf in the norm weights, biases and position table. The weight
   * matrices are not scanned for NaN (a pass over the whole file on every load); the converter
   * refuses checkpoints that hold any.
   */
  static async load(path: string, options: LoadModelOptions = {}): Promise<HovleModel> {
    const file = await readGguf(path);
    const hparams = hparamsFromMetadata(file.metadata, path);
    const tokens = file.metadata.get('tokenizer.ggml.tokens');
    if (!tokens || tokens.type !== 'arr_string' || tokens.value.length !== hparams.vocabSize) {
      throw new HovleError('GGUF_INVALID', `${path}: tokenizer.ggml.tokens must list ${hparams.vocabSize} tokens`);
    }
    // The image tokens the converter wrote (IMAGE_TOKENS when a file predates the key).
    const imageToken = (key: string, fallback: string) => {
      const v = file.metadata.get(key);
      if (v !== undefined && v.type !== 'string') throw new HovleError('GGUF_INVALID', `${path}: ${key} must be a string`);
      const text = v?.value ?? fallback;
      const at = tokens.value.indexOf(text);
      if (at < 0) throw new HovleError('GGUF_INVALID', `${path}: ${key} ${JSON.stringify(text)} is not in the vocabulary`);
      return at;
    };
    const imageContextId = imageToken(`${ARCH}.image.context_token`, IMAGE_TOKENS.context);
    const imageStartId = imageToken(`${ARCH}.image.start_token`, IMAGE_TOKENS.start);
    const imageEndId = imageToken(`${ARCH}.image.end_token`, IMAGE_TOKENS.end);
    const id = (key: string) => {
      const v = file.metadata.get(key);
      if (!v || v.type !== 'u32') throw new HovleError('GGUF_INVALID', `${path}: ${key} is missing`);
      if (v.value >= hparams.vocabSize) throw new HovleError('GGUF_INVALID', `${path}: ${key} ${v.value} is outside the vocabulary`);
      return v.value;
    };
    const tokenizer = Tokenizer.fromMetadata(file.metadata, path);
    const vocab: TokenInfo = { imageContextId, imageStartId, imageEndId, bosId: id('tokenizer.ggml.bos_token_id'), eotId: id('tokenizer.ggml.eot_token_id'), tokens: tokens.value };

    // The file must hold exactly the tensors these hyperparameters call for (the native loader
    // checks them again against ggml's own parse of the file).
    const expected = concreteTensors(hparams);
    const inFile = new Map(file.tensors.map((t) => [t.name, t]));
    for (const e of expected) {
      const t = inFile.get(e.gguf);
      if (!t) throw new HovleError('GGUF_INVALID', `${path}: tensor ${e.gguf} is missing`);
      if (t.dims.join(',') !== e.dims.join(',')) {
        throw new HovleError('GGUF_INVALID', `${path}: tensor ${e.gguf} is ${t.dims.join('x')}, the hyperparameters call for ${e.dims.join('x')}`);
      }
    }
    if (inFile.size !== expected.length) {
      throw new HovleError('GGUF_INVALID', `${path} has ${inFile.size} tensors, a HoVLE model with its hyperparameters has ${expected.length}`);
    }

    const { addon } = loadAddon();
    const device = options.device ?? (await pickDevice(options.backend ?? 'cpu'));
    const spec = {
      hparams: { ...hparams, imageContextId },
      tensors: expected.map((t) => ({ name: t.gguf, role: t.def.role, block: t.block ?? -1, dims: t.dims })),
      device,
      mmap: options.mmap ?? true,
      prefetch: options.prefetch ?? true,
      // Past the block count means all of them; the native side reads a 32-bit count.
      gpuLayers: options.gpuLayers === undefined ? -1 : Math.min(options.gpuLayers, 2 ** 31 - 1),
      visionOnDevice: options.visionOnDevice ?? true,
      repack: options.repack ?? true,
    };
    if (options.gpuLayers !== undefined && (!Number.isInteger(options.gpuLayers) || options.gpuLayers < 0)) {
      throw new HovleError('INVALID_ARGUMENT', 'gpuLayers must be a non-negative integer');
    }
    if (options.signal?.aborted) throw new HovleError('ABORTED', 'model loading was aborted');
    // Progress arrives from the loading thread without blocking it, so the last reports can land
    // after the load has settled: those are dropped, and 1 is reported before load() resolves.
    const onProgress = options.onProgress;
    let last = 0;
    let settled = false;
    const task = addon.loadModel(path, spec, onProgress ? (d, t) => {
      if (settled) return;
      last = t > 0 ? d / t : 1;
      onProgress(last);
    } : undefined);
    const onAbort = () => task.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const native = await task.promise.finally(() => void (settled = true));
      if (onProgress && last < 1 && !options.signal?.aborted) onProgress(1);
      if (options.signal?.aborted) {
        native.dispose();
        throw new HovleError('ABORTED', 'model loading was aborted');
      }
      return new HovleModel(native, path, hparams, vocab, device, tokenizer);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Weight bytes, the device, and how many decoder blocks run on it (0 on the CPU). */
  info(): { weightBytes: number; repackedBytes: number; device: string; deviceLayers: number } {
    return this.nativeModel().info();
  }

  /** @internal */
  nativeModel(): NativeModel {
    if (!this.native) throw new HovleError('DISPOSED', 'the model has been disposed');
    return this.native;
  }

  /**
   * Preprocesses an image with this model's settings (tile size, normalisation, thumbnail and
   * tile limits from the GGUF unless overridden), ready for evaluate().
   */
  async preprocessImage(
    input: ImageInput,
    options: PreprocessOptions = {},
  ): Promise<PixelTiles & { grid: [number, number]; width: number; height: number; ms: number }> {
    const v = this.hparams.vision;
    const r = await preprocessImage(input, {
      minTiles: v.minTiles,
      maxTiles: v.maxTiles,
      thumbnail: v.useThumbnail,
      tileSize: v.imageSize,
      mean: v.imageMean,
      std: v.imageStd,
      ...options,
    });
    return { data: r.data, tiles: r.tiles, grid: r.grid, width: r.width, height: r.height, ms: r.ms };
  }

  /**
   * A context with its own KV cache. The cache and the compute buffers its largest batches need
   * are checked against the memory available before anything is allocated (host: MemAvailable
   * and the cgroup limit; a device: the free memory its backend reports, and the
   * HOVLE_MEMORY_LIMIT_BYTES environment variable caps both): a context that will not fit is an
   * OUT_OF_MEMORY / OUT_OF_DEVICE_MEMORY error that gives the bytes needed and available.
   */
  async createContext(options: ContextOptions = {}): Promise<ModelContext> {
    const contextSize = options.contextSize ?? 4096;
    const post = this.hparams.vision.pixelShuffleLoc === 'post';
    const embeddingContextSize = options.embeddingContextSize ?? (post ? contextSize * 4 : contextSize);
    const batchSize = options.batchSize ?? (this.info().deviceLayers > 0 ? 512 : 256);
    for (const [k, v] of Object.entries({ contextSize, embeddingContextSize, batchSize })) {
      if (!Number.isInteger(v) || v < 1 || v > MAX_POSITIONS) throw new HovleError('INVALID_ARGUMENT', `${k} must be an integer in [1, ${MAX_POSITIONS}]`);
    }
    if (options.threads !== undefined) checkThreads(options.threads);
    const native = await this.nativeModel().createContext({
      contextEmbedding: embeddingContextSize,
      contextLlm: contextSize,
      batchSize,
      threads: options.threads ?? defaultComputeThreads(),
      flashAttention: options.flashAttention ?? true,
      kvType: options.kvType ?? 'f16',
    });
    return new ModelContext(this, native, contextSize, embeddingContextSize, batchSize);
  }

  dispose(): void {
    this.native?.dispose();
    this.native = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}

/** A context's `threads`: an integer in [1, maxComputeThreads()]. */
export function checkThreads(threads: number): void {
  const max = maxComputeThreads();
  if (!Number.isInteger(threads) || threads < 1 || threads > max) {
    throw new HovleError('INVALID_ARGUMENT', `threads must be an integer in [1, ${max}] (ggml's limit)`);
  }
}

async function pickDevice(backend: Backend): Promise<string> {
  const prefix = BACKEND_DEVICE_PREFIX[backend];
  if (!prefix) throw new HovleError('INVALID_ARGUMENT', `backend must be one of ${Object.keys(BACKEND_DEVICE_PREFIX).join(', ')}`);
  const raw = await loadAddon().addon.systemInfo();
  const dev = raw.devices.find((d) => d.name.startsWith(prefix));
  if (!dev) {
    throw new HovleError('DEVICE_NOT_FOUND', `no ${backend} device in this build (devices: ${raw.devices.map((d) => d.name).join(', ')})`);
  }
  return dev.name;
}

/**
 * Pixel data of one image: `tiles` tiles of 3 x size x size floats, normalised (CHW, tile-major).
 * Calls that take images read `data` in place, without a copy, until their Promise settles (as
 * fs.write reads its buffer): do not write to it or transfer its buffer meanwhile.
 */
export interface PixelTiles {
  data: Float32Array;
  tiles: number;
}

export interface EvaluateOptions {
  /** Which positions' logits to return: all (default), the last one, or a list. */
  logits?: 'all' | 'last' | number[];
  /** Also return the embedding module's output (its positions: the HD sequence in post mode). */
  hidden?: boolean;
  /**
   * Write the logits into this array (at least positions x vocabSize long) and return a view of
   * it, instead of a new array per call: a decode loop reusing one buffer leaves the GC no
   * 370 KB array per token, which V8 otherwise lets pile up to tens of MB before collecting.
   * The native side writes into it in place while the call runs (do not touch it until the call
   * settles); a call that fails part-way may have written some rows.
   */
  logitsInto?: Float32Array;
  /**
   * Greedy decoding's shortcut: return each requested position's most likely token id in
   * `argmax` and no logits (`logits` is empty). The pick runs in the graph, on the device that
   * computes the head, so a GPU sends back 4 bytes per position instead of a 370 KB row. Where
   * several logits tie for the maximum, which of them is picked depends on the backend. Not
   * with `logitsInto`.
   */
  greedy?: boolean;
  /**
   * Aborts the call: it rejects with ABORTED, within one graph (one micro-batch of the prompt,
   * or one image tile) of the abort, even while queued behind other calls, and leaves the cache
   * as it was before the call.
   */
  signal?: AbortSignal;
}

export interface EvaluateResult {
  /** [positions.length][vocab], row-major; empty with `greedy`. */
  logits: Float32Array;
  /** With `greedy`: the most likely token id at each of `positions`. */
  argmax?: Int32Array;
  positions: number[];
  vocabSize: number;
  /** [n][hidden]; n = ids.length ("pre") or the HD sequence length ("post"). */
  hidden?: Float32Array;
  /** "post" mode: the embedding module's (HD) sequence derived from the ids. */
  hdIds?: Int32Array;
  /** Wall time of the image front end, and of the 32 decoder layers (8 embedding + 24 LLM) with the head. */
  timings: { visionMs: number; decoderMs: number };
}

/** A KV-cache-holding context. Calls run one at a time (queued). */
export class ModelContext {
  private native: NativeContext | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Queued calls that have started running (a decode run's rollback checks none came between). */
  private callsStarted = 0;
  /** Decode runs not yet settled: dispose() stops them (they would otherwise run to maxSteps). */
  private readonly runs = new Set<DecodeRun>();
  /** The cancel flag of the evaluate() call running: dispose() sets it. */
  private inflight: NativeCancelFlag | undefined;

  constructor(
    readonly model: HovleModel, native: NativeContext, readonly contextSize: number, readonly embeddingContextSize: number,
    /** Positions a prefill computes per graph (ContextOptions.batchSize). */
    readonly batchSize: number,
  ) {
    this.native = native;
  }

  private ctx(): NativeContext {
    if (!this.native) throw new HovleError('DISPOSED', 'the context has been disposed');
    return this.native;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const start = () => {
      this.callsStarted++;
      return fn();
    };
    const run = this.queue.then(start, start);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Bytes this context holds besides the model: its KV caches (both segments), and the compute
   * buffers, sized at creation for the largest graphs it runs and checked against the memory
   * available then. Asking for many rows of logits does not grow them: those logits are computed
   * a few dozen rows per graph.
   */
  get memory(): { kvBytes: number; computeBytes: number } {
    return this.ctx().memory();
  }

  /** Positions cached so far in each segment. */
  get cached(): { embedding: number; llm: number } {
    const c = this.ctx();
    return { embedding: c.nPast('embedding'), llm: c.nPast('llm') };
  }

  /** A new context holding a copy of this one's cache: branch several continuations from one prefix. */
  fork(): Promise<ModelContext> {
    return this.serial(async () => new ModelContext(this.model, await this.ctx().fork(), this.contextSize, this.embeddingContextSize, this.batchSize));
  }

  /**
   * Forgets everything after the first `llm` / `embedding` positions. Both are checked (integers
   * within what is cached) before either cache changes.
   */
  rewind(llm: number, embedding = llm): Promise<void> {
    return this.serial(async () => {
      const c = this.ctx();
      const cached = { llm: c.nPast('llm'), embedding: c.nPast('embedding') };
      for (const [name, n] of [['llm', llm], ['embedding', embedding]] as const) {
        if (!Number.isInteger(n) || n < 0 || n > cached[name]) {
          throw new HovleError('INVALID_ARGUMENT', `rewind: ${name} must be an integer in [0, ${cached[name]}] (the positions cached), not ${String(n)}`);
        }
      }
      c.truncate('llm', llm);
      c.truncate('embedding', embedding);
    });
  }

  /**
   * The image front end alone (patch embedding, position embedding and, in "pre" mode, pixel
   * shuffle and projection): the rows that stand for the images' <IMG_CONTEXT> tokens in the
   * embedding module's input, [tiles x rows per tile x hidden]. Leaves the cache untouched.
   * `into`: an array of at least that many floats to write the rows to (the result is a view of
   * its start), so that repeated calls need not leave 15 MB of garbage each (7 tiles); held by
   * the call until it settles.
   */
  encodeImages(images: readonly PixelTiles[], options: { into?: Float32Array } = {}): Promise<Float32Array> {
    return this.serial(async () => {
      const c = this.ctx();
      const hp = this.model.hparams;
      const tiles = countTiles(hp, images);
      if (tiles === 0) throw new HovleError('INVALID_ARGUMENT', 'no images to encode');
      const project = hp.vision.pixelShuffleLoc !== 'post';
      const n = visionFloats(hp, tiles, project);
      const { into } = options;
      if (into !== undefined && (!(into instanceof Float32Array) || into.length < n)) {
        throw new HovleError('INVALID_ARGUMENT', `into must be a Float32Array of at least ${n} floats (${tiles} tiles)`);
      }
      return visionRows(c, hp, images, tiles, project, undefined, into?.subarray(0, n));
    });
  }

  /**
   * Appends `ids` (with every image's <IMG_CONTEXT> run already expanded, 256 per tile) and the
   * images' pixels to the cache, and returns the requested logits.
   */
  evaluate(ids: ArrayLike<number>, images: readonly PixelTiles[] = [], options: EvaluateOptions = {}): Promise<EvaluateResult> {
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) return Promise.reject(new HovleError('INVALID_ARGUMENT', 'signal must be an AbortSignal'));
    let started = false;
    const work = this.serial(() => {
      started = true;
      return this.evaluateCancellable(Int32Array.from(ids), images, options);
    });
    if (!signal) return work;
    // While queued behind other calls it settles at the abort (the call still takes its turn and
    // then stops at once, so the calls behind it keep their order). Once running it settles
    // when the native side has stopped, within a graph: until then that side may still write a
    // logitsInto buffer or read the pixels, which the caller may reuse once the call settles.
    return new Promise<EvaluateResult>((resolve, reject) => {
      const onAbort = () => {
        if (!started) reject(new HovleError('ABORTED', 'the evaluation was aborted', { cause: signal.reason }));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /**
   * Generation from `first` (a token not yet in the cache, typically the pick of the prompt's
   * last position) without a trip through the event loop per token: the model's thread
   * evaluates each pick and goes straight on to the next, while the returned iterator hands the
   * picks over. Greedy (the argmax, taken on the device) unless `options.sampler` is given. What
   * ends up cached is in DecodeRun's description. Text tokens only: a pick of the image-context
   * id fails the step that would evaluate it, as evaluate() would (a sampler can ban it with
   * logitBias).
   */
  decode(first: number, options: DecodeOptions): DecodeRun {
    const V = this.model.hparams.vocabSize;
    checkTokenId(first, V);
    if (first === this.model.vocab.imageContextId) throw new HovleError('INVALID_ARGUMENT', 'decoding starts from a text token, not the image-context id');
    const { maxSteps, stopIds = [], signal, sampler, history = [] } = options;
    if (!Number.isInteger(maxSteps) || maxSteps < 1 || maxSteps > MAX_POSITIONS) throw new HovleError('INVALID_ARGUMENT', `maxSteps must be an integer in [1, ${MAX_POSITIONS}]`);
    if (!Array.isArray(stopIds)) throw new HovleError('INVALID_ARGUMENT', 'stopIds must be an array of token ids');
    for (const id of stopIds) checkTokenId(id, V);
    if (sampler !== undefined && !(sampler instanceof Sampler)) throw new HovleError('INVALID_ARGUMENT', 'sampler must be a Sampler');
    if (sampler && sampler.vocabSize !== V) throw new HovleError('INVALID_ARGUMENT', `the sampler was made for ${sampler.vocabSize} tokens, the model has ${V}`);
    if (!Array.isArray(history)) throw new HovleError('INVALID_ARGUMENT', 'history must be an array of token ids');
    for (const id of history) checkTokenId(id, V);
    this.ctx(); // DISPOSED now rather than from the iterator
    const run = new DecodeRun({ serial: (fn) => this.serial(fn), native: () => this.ctx(), callsStarted: () => this.callsStarted }, first, {
      maxSteps, stopIds: Int32Array.from(stopIds), ...(signal ? { signal } : {}),
      ...(sampler ? { sampler, history: Int32Array.from(history) } : {}),
    });
    this.runs.add(run);
    void run.finished.then(() => this.runs.delete(run));
    return run;
  }

  /**
   * evaluateNow with a native cancel flag that an abort of `options.signal`, or dispose(), sets:
   * the call stops before its next graph, and an abort leaves the cache as the call found it.
   */
  private async evaluateCancellable(ids: Int32Array, images: readonly PixelTiles[], options: EvaluateOptions): Promise<EvaluateResult> {
    const c = this.ctx();
    const { signal } = options;
    const aborted = () => new HovleError('ABORTED', 'the evaluation was aborted', { cause: signal?.reason });
    if (signal?.aborted) throw aborted();
    const flag = new (loadAddon().addon.CancelFlag)();
    const base = { llm: c.nPast('llm'), embedding: c.nPast('embedding') };
    this.inflight = flag;
    const onAbort = () => flag.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    const checkpoint = () => {
      if (!this.native) throw new HovleError('DISPOSED', 'the context has been disposed');
      if (signal?.aborted) throw aborted();
    };
    try {
      const r = await this.evaluateNow(ids, images, options, flag, checkpoint);
      checkpoint(); // an abort during the last graph: the result is not the caller's any more
      return r;
    } catch (e) {
      // A failure after some positions went in (an abort after the last graph's check, or one
      // between the staged path's stages, a later stage that fails): the cache goes back to
      // where the call found it.
      if (this.native === c) {
        if (c.nPast('llm') > base.llm) c.truncate('llm', base.llm);
        if (c.nPast('embedding') > base.embedding) c.truncate('embedding', base.embedding);
      }
      if (e instanceof HovleError && e.code === 'ABORTED') {
        if (!this.native) throw new HovleError('DISPOSED', 'the context has been disposed');
        // The native side names what it stopped; the caller's reason goes with it.
        if (signal?.aborted && e.cause === undefined) throw aborted();
      }
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (this.inflight === flag) this.inflight = undefined;
    }
  }

  private async evaluateNow(ids: Int32Array, images: readonly PixelTiles[], options: EvaluateOptions,
    cancel: NativeCancelFlag, checkpoint: () => void): Promise<EvaluateResult> {
    const c = this.ctx();
    const hp = this.model.hparams;
    const H = hp.llm.embeddingLength;
    const V = hp.vocabSize;
    const ctxId = this.model.vocab.imageContextId;
    const perTile = tokensPerTile(hp.vision);
    const patches = patchesPerTile(hp.vision);
    if (ids.length === 0) throw new HovleError('INVALID_ARGUMENT', 'ids must not be empty');
    for (const id of ids) checkTokenId(id, V);
    const tiles = countTiles(hp, images);
    const nCtxTokens = ids.reduce((n, id) => n + (id === ctxId ? 1 : 0), 0);
    if (nCtxTokens !== tiles * perTile) {
      throw new HovleError('INVALID_ARGUMENT', `${nCtxTokens} <IMG_CONTEXT> tokens, but the images have ${tiles} tiles (${tiles * perTile} expected)`);
    }
    const positions = options.logits === 'last' ? [ids.length - 1] : Array.isArray(options.logits) ? [...options.logits] : [...ids.keys()];
    positions.forEach((p, i) => {
      if (!Number.isInteger(p) || p < 0 || p >= ids.length || (i > 0 && p <= positions[i - 1]!)) {
        throw new HovleError('INVALID_ARGUMENT', 'logit positions must be increasing indices into ids');
      }
    });
    const into = options.logitsInto;
    if (into !== undefined && (!(into instanceof Float32Array) || into.length < positions.length * V)) {
      throw new HovleError('INVALID_ARGUMENT', `logitsInto must be a Float32Array of at least ${positions.length * V} floats (${positions.length} x ${V})`);
    }
    const greedy = options.greedy === true;
    if (options.greedy !== undefined && typeof options.greedy !== 'boolean') throw new HovleError('INVALID_ARGUMENT', 'greedy must be a boolean');
    if (greedy && into !== undefined) throw new HovleError('INVALID_ARGUMENT', 'greedy returns no logits: it takes no logitsInto');
    const view = (l: Float32Array) => (into ? into.subarray(0, positions.length * V) : l);
    const post = hp.vision.pixelShuffleLoc === 'post' && tiles > 0;
    const embIds = post ? expandHd(ids, ctxId, perTile, patches) : ids;
    const room = { llm: this.contextSize - c.nPast('llm'), embedding: this.embeddingContextSize - c.nPast('embedding') };
    if (ids.length > room.llm || embIds.length > room.embedding) {
      throw new HovleError('CONTEXT_FULL', `the input needs ${ids.length} positions (${embIds.length} in the embedding module), ` +
        `but the context has ${room.llm} (${room.embedding}) left of ${this.contextSize} (${this.embeddingContextSize})`);
    }

    const t0 = performance.now();
    const imageRows = tiles > 0 ? await visionRows(c, hp, images, tiles, !post, cancel) : null;
    const t1 = performance.now();
    // Image-sized arrays made here for the native side are freed once the calls that read them
    // have settled, not left to V8, which collects such garbage only after ~64 MB of it (four
    // turns of 7-tile images), all of it resident until then.
    const scratch: Float32Array[] = imageRows ? [imageRows] : [];
    try {
      if (!post && !options.hidden) {
        // The common case: one graph per micro-batch through all 32 layers.
        const picks = greedy ? new Int32Array(positions.length) : undefined;
        const logits = view(await c.forward(embIds, imageRows, Int32Array.from(positions), into ?? null, picks ?? null, cancel));
        return { logits, ...(picks ? { argmax: picks } : {}), timings: { visionMs: t1 - t0, decoderMs: performance.now() - t1 }, positions, vocabSize: V };
      }
      // The staged path sees an abort between its stages.
      checkpoint();
      const hidden = await c.embed(embIds, imageRows);
      if (!options.hidden) scratch.push(hidden);
      checkpoint();
      let shuffleMs = 0;
      let llmIn = hidden;
      if (post) {
        // Image rows of the HD output, pixel-shuffled and projected per tile; text rows copied.
        const imgHd = new Float32Array(tiles * patches * H);
        scratch.push(imgHd);
        let k = 0;
        for (let i = 0; i < embIds.length; i++) if (embIds[i] === ctxId) imgHd.set(hidden.subarray(i * H, (i + 1) * H), H * k++);
        const ts = performance.now();
        const proj = await c.shuffleProject(imgHd, tiles);
        scratch.push(proj);
        shuffleMs = performance.now() - ts;
        checkpoint();
        llmIn = new Float32Array(ids.length * H);
        scratch.push(llmIn);
        let hd = 0;
        let p = 0;
        for (let i = 0; i < ids.length; i++) {
          if (ids[i] === ctxId) {
            llmIn.set(proj.subarray(p * H, (p + 1) * H), i * H);
            p++;
            hd++;
            // Each tile's 256 LLM positions stand for 1024 HD positions.
            if (p % perTile === 0) hd += patches - perTile;
            continue;
          }
          llmIn.set(hidden.subarray(hd * H, (hd + 1) * H), i * H);
          hd++;
        }
      }
      const logits = view(await c.llm(llmIn, Int32Array.from(positions), into));
      return {
        // The staged path has the logits on the host already: the same picks, taken here.
        ...(greedy ? { logits: new Float32Array(0), argmax: Int32Array.from(positions, (_, i) => argmax(logits.subarray(i * V, (i + 1) * V))) } : { logits }),
        // In "post" mode the pixel shuffle and projection run after the embedding layers; they are
        // still the image front end.
        timings: { visionMs: t1 - t0 + shuffleMs, decoderMs: performance.now() - t1 - shuffleMs },
        positions,
        vocabSize: V,
        ...(options.hidden ? { hidden } : {}),
        ...(post ? { hdIds: embIds } : {}),
      };
    } finally {
      releaseScratch(scratch);
    }
  }

  dispose(): void {
    for (const run of this.runs) run.interrupt(new HovleError('DISPOSED', 'the context has been disposed'));
    this.inflight?.cancel();
    this.native?.dispose();
    this.native = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function checkTokenId(id: unknown, vocabSize: number): void {
  if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize) {
    throw new HovleError('INVALID_ARGUMENT', `token id ${String(id)} is outside the vocabulary (0..${vocabSize - 1})`);
  }
}

/** Total tiles of `images`, each checked to hold exactly tiles x channels x side x side floats. */
function countTiles(hp: HovleHParams, images: readonly PixelTiles[]): number {
  const side = hp.vision.imageSize;
  const tileFloats = hp.vision.numChannels * side * side;
  let tiles = 0;
  for (const img of images) {
    if (!(img.data instanceof Float32Array) || !Number.isInteger(img.tiles) || img.tiles < 1 || img.data.length !== img.tiles * tileFloats) {
      throw new HovleError('INVALID_ARGUMENT', `each image needs tiles x 3 x ${side} x ${side} floats`);
    }
    tiles += img.tiles;
  }
  return tiles;
}

/** "post" mode: every run of <IMG_CONTEXT> (perTile per tile) becomes `patches` per tile. */
export function expandHd(ids: Int32Array, ctxId: number, perTile: number, patches: number): Int32Array {
  const out: number[] = [];
  let run = 0;
  const flush = () => {
    if (run % perTile !== 0) throw new HovleError('INVALID_ARGUMENT', `a run of ${run} <IMG_CONTEXT> tokens is not a whole number of tiles`);
    for (let i = 0; i < (run / perTile) * patches; i++) out.push(ctxId);
    run = 0;
  };
  for (const id of ids) {
    if (id === ctxId) {
      run++;
      continue;
    }
    if (run) flush();
    out.push(id);
  }
  if (run) flush();
  return Int32Array.from(out);
}

/**
 * The front end's rows for `images`, written by the native side into an array allocated here:
 * neither the pixels nor the rows are copied across (7 tiles: 17 MB of pixels, 15 MB of rows).
 */
function visionRows(c: NativeContext, hp: HovleHParams, images: readonly PixelTiles[], tiles: number, project: boolean, cancel?: NativeCancelFlag,
  into?: Float32Array): Promise<Float32Array> {
  return c.vision(images.map((i) => i.data), tiles, project, into ?? new Float32Array(visionFloats(hp, tiles, project)), cancel);
}

/**
 * Frees image-sized arrays the runtime made for itself (image rows, a session's pixels) once
 * every native call that read them has settled; see native/memory.h ReleaseBuffersJs.
 */
export function releaseScratch(arrays: readonly Float32Array[]): void {
  if (arrays.length > 0) loadAddon().addon.releaseBuffers(arrays);
}

/** Floats of the front end's rows for `tiles` tiles. */
function visionFloats(hp: HovleHParams, tiles: number, project: boolean): number {
  const rowsPerTile = project ? tokensPerTile(hp.vision) : patchesPerTile(hp.vision);
  const hidden = project ? hp.llm.embeddingLength : hp.embedding.embeddingLength;
  return tiles * rowsPerTile * hidden;
}

