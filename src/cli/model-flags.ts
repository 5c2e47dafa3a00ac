// The flags every command that runs a model shares (ask, chat, serve, bench): one definition,
// one help text and one parser, so they spell and validate them identically.
import { statSync } from 'node:fs';

import { loadModel } from '../api.js';
import type { Backend, ContextOptions, HovleModel } from '../runtime/model.js';
import { validateSampling, type SamplingOptions } from '../runtime/sampler.js';
import { maxComputeThreads } from '../system-info.js';
import { optionalPositiveInt, UsageError } from './command.js';
import { ProgressBar } from './progress.js';

const BACKENDS: readonly Backend[] = ['cpu', 'vulkan', 'cuda', 'metal'];
const KV_TYPES = ['f16', 'f32', 'q8_0'] as const;

/** parseArgs option specs for loading a model and creating its context. */
export const modelFlags = {
  model: { type: 'string', short: 'm' },
  backend: { type: 'string', default: 'cpu' },
  'gpu-layers': { type: 'string' },
  'ctx-size': { type: 'string', short: 'c' },
  'kv-type': { type: 'string', default: 'f16' },
  'no-flash': { type: 'boolean', default: false },
  threads: { type: 'string', short: 't' },
  quiet: { type: 'boolean', short: 'q', default: false },
} as const;

export const modelFlagsUsage = `Model options:
  -m, --model FILE       HoVLE GGUF (required)
      --backend NAME     cpu (default), vulkan, cuda, metal
      --gpu-layers N     decoder blocks on the device (default: all)
  -c, --ctx-size N       context positions (default 4096)
      --kv-type T        KV cache: f16 (default), f32 (closest to the reference), q8_0
      --no-flash         attention as separate matmul + softmax instead of the fused
                         flash-attention kernel (more memory; not with --kv-type q8_0)
  -t, --threads N        CPU threads (default: one per physical core; see hovle info)
  -q, --quiet            no progress bar while loading`;

/** parseArgs option specs for sampling a reply. */
export const samplingFlags = {
  'max-tokens': { type: 'string', short: 'n' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  seed: { type: 'string' },
  system: { type: 'string' },
  'max-tiles': { type: 'string' },
} as const;

export const samplingFlagsUsage = `Generation options:
  -n, --max-tokens N     default 256
      --temperature T    default 0 (greedy)
      --top-p P  --top-k K  --seed N
      --system TEXT      replace the model's default system message
      --max-tiles N      tiles per image (default: the model's)`;

interface ModelFlagValues {
  model?: string;
  backend?: string;
  'gpu-layers'?: string;
  'ctx-size'?: string;
  'kv-type'?: string;
  'no-flash'?: boolean;
  threads?: string;
  quiet?: boolean;
}

interface SamplingFlagValues {
  'max-tokens'?: string;
  temperature?: string;
  'top-p'?: string;
  'top-k'?: string;
  seed?: string;
  system?: string;
  'max-tiles'?: string;
}

function finiteNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} must be a number`);
  return n;
}

function nonNegativeInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be a non-negative integer`);
  return n;
}

/** Context options from the flags (validated; throws UsageError). */
export function contextOptions(values: ModelFlagValues): ContextOptions {
  const kvType = values['kv-type'] ?? 'f16';
  if (!(KV_TYPES as readonly string[]).includes(kvType)) throw new UsageError(`--kv-type must be one of ${KV_TYPES.join(', ')}`);
  // A quantized cache is only readable by the fused attention kernel.
  if (kvType === 'q8_0' && values['no-flash']) throw new UsageError('--kv-type q8_0 needs flash attention (drop --no-flash)');
  const contextSize = optionalPositiveInt(values['ctx-size'], '--ctx-size');
  const threads = optionalPositiveInt(values.threads, '--threads');
  if (threads !== undefined && threads > maxComputeThreads()) throw new UsageError(`--threads must be at most ${maxComputeThreads()} (ggml's limit)`);
  return {
    kvType: kvType as ContextOptions['kvType'],
    flashAttention: !values['no-flash'],
    ...(contextSize !== undefined ? { contextSize } : {}),
    ...(threads !== undefined ? { threads } : {}),
  };
}

/** Validates every model flag first, so a typo fails before a multi-second load. */
export function checkModelFlags(values: ModelFlagValues): { path: string; backend: Backend; gpuLayers?: number } {
  if (!values.model) throw new UsageError('--model is required');
  const backend = (values.backend ?? 'cpu') as Backend;
  if (!BACKENDS.includes(backend)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}`);
  const gpuLayers = nonNegativeInt(values['gpu-layers'], '--gpu-layers');
  contextOptions(values);
  return { path: values.model, backend, ...(gpuLayers !== undefined ? { gpuLayers } : {}) };
}

/** Loads the model the flags name, with a progress bar on stderr unless --quiet. */
export async function loadModelFromFlags(values: ModelFlagValues, signal?: AbortSignal): Promise<HovleModel> {
  const { path, backend, gpuLayers } = checkModelFlags(values);
  let size = 0;
  try {
    size = statSync(path).size;
  } catch {
    // The loader reports a missing or unreadable file with its own typed error.
  }
  const bar = new ProgressBar('loading', Boolean(values.quiet));
  const model = await loadModel(path, {
    backend,
    ...(gpuLayers !== undefined ? { gpuLayers } : {}),
    ...(signal ? { signal } : {}),
    onProgress: (f) => bar.update(f * size, size),
  });
  bar.done();
  return model;
}

/** Sampling, length and tiling options from the flags (validated; throws UsageError). */
export function samplingOptions(values: SamplingFlagValues): SamplingOptions & { maxTokens: number; maxTiles?: number } {
  const maxTiles = optionalPositiveInt(values['max-tiles'], '--max-tiles');
  const topK = optionalPositiveInt(values['top-k'], '--top-k');
  const temperature = finiteNumber(values.temperature, '--temperature');
  const topP = finiteNumber(values['top-p'], '--top-p');
  const seed = finiteNumber(values.seed, '--seed');
  const sampling = {
    ...(temperature !== undefined ? { temperature } : {}),
    ...(topP !== undefined ? { topP } : {}),
    ...(topK !== undefined ? { topK } : {}),
    ...(seed !== undefined ? { seed } : {}),
  };
  // The sampler's own checks, now: a bad value is a usage error before a multi-second load.
  try {
    validateSampling(sampling);
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^(temperature|topP|topK|seed)\b/, (k) => `--${FLAG_OF[k]}`));
  }
  return {
    maxTokens: optionalPositiveInt(values['max-tokens'], '--max-tokens') ?? 256,
    ...(maxTiles !== undefined ? { maxTiles } : {}),
    ...sampling,
  };
}

const FLAG_OF: Record<string, string> = { temperature: 'temperature', topP: 'top-p', topK: 'top-k', seed: 'seed' };
