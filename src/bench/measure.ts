// Speed and memory of one GGUF in this process: what `hovle bench` prints and what bench/run.mjs
// collects per model (one process per model, so peak RSS belongs to that model alone).
// Prompts are random token ids outside the special range and synthetic pixels, so the numbers
// measure compute, not the tokenizer or a particular picture (time to first token does include
// the real image pipeline on a 448x448 frame).
import { HovleError } from '../errors.js';
import { readGguf } from '../gguf/reader.js';
import { tokensPerTile } from '../model/hparams.js';
import { HovleModel, type ContextOptions, type LoadModelOptions, type ModelContext, type PixelTiles } from '../runtime/model.js';
import { Session } from '../session/session.js';

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number;
  /** The measurements themselves, so runs from several processes can be pooled (bench/run.mjs). */
  samples: number[];
}

export interface BenchOptions {
  load?: Omit<LoadModelOptions, 'signal' | 'onProgress'>;
  context?: Pick<ContextOptions, 'kvType' | 'flashAttention' | 'threads'>;
  /** Repetitions of each measurement (default 3). */
  reps?: number;
  /** Text prompt lengths for prefill (default [2048]). */
  prompts?: number[];
  /** Cached positions before each decode measurement (default [0, 1024, 4096]). */
  depths?: number[];
  /** Tokens generated per decode measurement (default 32). */
  decodeTokens?: number;
  /** Tiles per image-prompt measurement (default [1, 7]: one tile, and 6 tiles + thumbnail). */
  imageTiles?: number[];
  /** Called before each measurement, for progress output. */
  onStep?: (label: string) => void;
}

export interface BenchResult {
  model: string;
  fileBytes: number;
  /** ggml types of the 2-D weights, e.g. { q4_K: 195, q6_K: 33 }. */
  weightTypes: Record<string, number>;
  /** Bytes of weights read for one decode step at depth 0 (every decoder block and the head). */
  bytesPerToken: number;
  kvBytes: number;
  /** KV cache bytes per cached position: what a decode step at depth d reads on top, d times. */
  kvBytesPerPosition: number;
  /** Positions a prefill computes per graph (the context's micro-batch). */
  batchSize: number;
  device: string;
  threads: number | undefined;
  kvType: string;
  flashAttention: boolean;
  /**
   * First load in the process (cold if the page cache was dropped beforehand), then reloads.
   * With the default prefetch a load reads mapped weights in, so a cold figure includes the disk.
   */
  loadFirstMs: number;
  loadWarmMs: Spread;
  /** The image front end (patch embedding, pixel shuffle, projection) per tile count. */
  imageFrontEndMs: Record<string, Spread>;
  /**
   * Prefill of a 1-tile image prompt (about 300 tokens); frontEndShare is the front end's time
   * over the prefill time of the image's own tokens.
   */
  imagePrefill: Record<string, { tokens: number; tokensPerSecond: Spread; frontEndShare: Spread }>;
  prefillTokensPerSecond: Record<string, Spread>;
  decodeTokensPerSecond: Record<string, Spread>;
  /** A fresh session asked about one 448x448 RGB frame: image pipeline, prefill, first sample. */
  timeToFirstTokenMs: Spread;
  peakRssBytes: number;
}

export function spread(values: number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs: s.length, samples: s };
}

/** A deterministic stream of ordinary token ids (no specials), so runs are repeatable. */
function tokenSource(model: HovleModel): () => number {
  let seed = 12345;
  const lo = 300;
  const span = Math.max(1, Math.min(20000, model.hparams.vocabSize - lo));
  const { tokens, imageContextId, bosId, eotId } = model.vocab;
  // Control and image tokens (<img>, <IMG_CONTEXT>, <|im_end|>...) may sit anywhere in a
  // vocabulary; a prompt of ordinary text never contains them.
  const special = (id: number) => id === imageContextId || id === bosId || id === eotId || /^<.*>$/s.test(tokens[id] ?? '');
  return () => {
    for (;;) {
      const id = ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % span) + lo;
      if (!special(id)) return id;
    }
  };
}

function syntheticTiles(model: HovleModel, tiles: number): PixelTiles {
  const side = model.hparams.vision.imageSize;
  const data = new Float32Array(tiles * 3 * side * side);
  let s = 7;
  for (let i = 0; i < data.length; i++) data[i] = ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31) - 1;
  return { data, tiles };
}

/** A 448x448 RGB frame with some structure (gradients and stripes), as a camera would deliver. */
function syntheticFrame(side: number) {
  const data = Buffer.alloc(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const o = (y * side + x) * 3;
      data[o] = (x * 255) / side;
      data[o + 1] = (y * 255) / side;
      data[o + 2] = ((x >> 4) + (y >> 4)) % 2 ? 200 : 40;
    }
  }
  return { raw: { data, width: side, height: side, format: 'rgb' as const } };
}

/** Context positions for the time-to-first-token prompt: one 448x448 frame and a question. */
const TTFT_CONTEXT = 1024;

export async function benchModel(path: string, options: BenchOptions = {}): Promise<BenchResult> {
  const reps = options.reps ?? 3;
  const prompts = options.prompts ?? [2048];
  const depths = options.depths ?? [0, 1024, 4096];
  const nDecode = options.decodeTokens ?? 32;
  const tileCounts = options.imageTiles ?? [1, 7];
  const step = options.onStep ?? (() => undefined);
  const kvType = options.context?.kvType ?? 'f16';
  const flashAttention = options.context?.flashAttention ?? true;

  const gguf = await readGguf(path);
  const weightTypes: Record<string, number> = {};
  let bytesPerToken = 0;
  for (const t of gguf.tensors) {
    if (t.dims.filter((d) => d > 1).length >= 2) weightTypes[t.type.name] = (weightTypes[t.type.name] ?? 0) + 1;
    // A decode step reads every block's weights and the head; of the token table only one row.
    if (t.name.startsWith('blk.') || t.name.startsWith('output')) bytesPerToken += t.size;
  }

  step('load');
  let t = performance.now();
  let model = await HovleModel.load(path, options.load ?? {});
  const loadFirstMs = performance.now() - t;
  const warm: number[] = [];
  for (let i = 0; i < reps; i++) {
    model.dispose();
    t = performance.now();
    model = await HovleModel.load(path, options.load ?? {});
    warm.push(performance.now() - t);
  }

  const next = tokenSource(model);
  const perTile = tokensPerTile(model.hparams.vision);
  const maxPrompt = Math.max(...prompts, perTile + 44);
  // At least the room the time-to-first-token session needs for a frame and a question. That
  // session takes the same size, so the KV cache in the RSS budget (GGUF + KV + 150 MiB) is the
  // largest one the run holds: a session of its own, larger size outgrew a short run's budget.
  const contextSize = Math.max(maxPrompt, TTFT_CONTEXT, ...depths.map((d) => d + nDecode)) + 16;
  const ctxOptions: ContextOptions = { ...options.context, flashAttention, kvType: kvType as ContextOptions['kvType'], contextSize };
  const ctx: ModelContext = await model.createContext(ctxOptions);
  const { kvBytes } = ctx.memory;
  const kvBytesPerPosition = kvBytes / ctx.contextSize;
  const ids = (n: number, first = true) => {
    const out = first ? [model.vocab.bosId] : [];
    while (out.length < n) out.push(next());
    return out;
  };

  // Untimed: the first graphs after a load (buffers, CPU caches; with prefetch off, the mapped
  // weights' pages too). llama-bench's warm-up run does the same for its side.
  step('warm-up');
  await ctx.encodeImages([syntheticTiles(model, 1)]);
  await ctx.evaluate(ids(16), [], { logits: 'last' });
  await ctx.rewind(0);

  const imageFrontEndMs: BenchResult['imageFrontEndMs'] = {};
  for (const tiles of tileCounts) {
    step(`image front end, ${tiles} tile${tiles > 1 ? 's' : ''}`);
    const px = syntheticTiles(model, tiles);
    // One output for every repetition, as a caller encoding frame after frame would keep.
    let rows: Float32Array | undefined;
    const runs: number[] = [];
    for (let i = 0; i < reps; i++) {
      t = performance.now();
      rows = await ctx.encodeImages([px], rows ? { into: rows } : {});
      runs.push(performance.now() - t);
    }
    imageFrontEndMs[String(tiles)] = spread(runs);
  }

  // A one-tile image prompt with text around it to about 300 tokens, as a short question makes.
  step('prefill, 1-tile image prompt');
  const imagePrefill: BenchResult['imagePrefill'] = {};
  {
    const px = syntheticTiles(model, 1);
    const prompt = [...ids(20), ...Array(perTile).fill(model.vocab.imageContextId), ...ids(24, false)];
    const tps: number[] = [];
    const share: number[] = [];
    for (let i = 0; i < reps; i++) {
      await ctx.rewind(0);
      t = performance.now();
      const r = await ctx.evaluate(prompt, [px], { logits: 'last' });
      const ms = performance.now() - t;
      tps.push(prompt.length / (ms / 1000));
      // The front end against the prefill of its own image tokens (their share of the prompt).
      share.push(r.timings.visionMs / ((ms - r.timings.visionMs) * (perTile / prompt.length)));
    }
    imagePrefill['1'] = { tokens: prompt.length, tokensPerSecond: spread(tps), frontEndShare: spread(share) };
  }

  const prefillTokensPerSecond: BenchResult['prefillTokensPerSecond'] = {};
  for (const n of prompts) {
    step(`prefill ${n} tokens`);
    const prompt = ids(n);
    const runs: number[] = [];
    for (let i = 0; i < reps; i++) {
      await ctx.rewind(0);
      t = performance.now();
      await ctx.evaluate(prompt, [], { logits: 'last' });
      runs.push(n / ((performance.now() - t) / 1000));
    }
    prefillTokensPerSecond[String(n)] = spread(runs);
  }

  // Each depth is filled once (untimed; a deeper one extends the shallower fill) and decoding
  // rewinds to it between repetitions, so a 4096-deep measurement costs one 4096-token prefill.
  const decodeTokensPerSecond: BenchResult['decodeTokensPerSecond'] = {};
  // As Session.ask decodes at temperature 0: one greedy run on the model's thread, the pick
  // taken on the device, no logits back and no event-loop trip per token.
  await ctx.rewind(0);
  let filled = 0;
  for (const depth of [...depths].sort((a, b) => a - b)) {
    step(`decode at depth ${depth}`);
    if (depth > filled) {
      await ctx.evaluate(ids(depth - filled, filled === 0), [], { logits: 'last' });
      filled = depth;
    }
    const runs: number[] = [];
    for (let i = 0; i < reps; i++) {
      await ctx.rewind(filled);
      const first = filled === 0 ? model.vocab.bosId : next();
      t = performance.now();
      let made = 0;
      for await (const _ of ctx.decode(first, { maxSteps: nDecode })) made++;
      if (made !== nDecode) throw new HovleError('INTERNAL', `the decode run ended after ${made} of ${nDecode} steps`);
      runs.push(nDecode / ((performance.now() - t) / 1000));
    }
    decodeTokensPerSecond[String(depth)] = spread(runs);
    await ctx.rewind(filled);
  }
  ctx.dispose();

  step('time to first token');
  const side = model.hparams.vision.imageSize;
  const ttft: number[] = [];
  for (let i = 0; i < reps; i++) {
    const session = await Session.create(model, ctxOptions);
    const r = await session.ask({ text: 'What is in front of the robot?', images: [syntheticFrame(side)] }, { maxTokens: 1 });
    ttft.push(r.stats.timeToFirstTokenMs);
    session.dispose();
  }

  const result: BenchResult = {
    model: path,
    fileBytes: gguf.fileSize,
    weightTypes,
    bytesPerToken,
    kvBytes,
    kvBytesPerPosition,
    batchSize: ctx.batchSize,
    device: model.device,
    threads: options.context?.threads,
    kvType,
    flashAttention,
    loadFirstMs,
    loadWarmMs: spread(warm),
    imageFrontEndMs,
    imagePrefill,
    prefillTokensPerSecond,
    decodeTokensPerSecond,
    timeToFirstTokenMs: spread(ttft),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  model.dispose();
  return result;
}
