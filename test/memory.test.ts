// Memory is checked before it is allocated: a context or weights that will not fit are a typed
// error with the numbers (needed, available, where the figure came from), not an allocation the
// kernel overcommits and the OOM killer settles later. HOVLE_MEMORY_LIMIT_BYTES caps what counts
// as available, so the tests do not depend on this machine's memory.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { HovleError } from '../src/errors.js';
import { HovleModel } from '../src/runtime/model.js';
import { Session } from '../src/session/session.js';
import { tempDir, TINY } from './helpers/tmp.js';

const dir = tempDir('memory');
const MiB = 1024 * 1024;
let path: string;
let model: HovleModel;

const withLimit = async <T>(bytes: number | string, fn: () => Promise<T>): Promise<T> => {
  process.env.HOVLE_MEMORY_LIMIT_BYTES = String(bytes);
  try {
    return await fn();
  } finally {
    delete process.env.HOVLE_MEMORY_LIMIT_BYTES;
  }
};

async function failure(p: Promise<unknown>): Promise<HovleError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(HovleError);
  return err as HovleError;
}

/** The model still answers, the same as before. */
async function healthy(reference: number[]): Promise<void> {
  const s = await Session.create(model, { contextSize: 512, threads: 1 });
  expect((await s.ask('Hello!', { maxTokens: 8 })).tokens).toEqual(reference);
  s.dispose();
}

let reference: number[];
beforeAll(async () => {
  path = join(dir, 'tiny.gguf');
  await convertCheckpoint(TINY, path, { type: 'f32' });
  model = await HovleModel.load(path);
  const s = await Session.create(model, { contextSize: 512, threads: 1 });
  reference = (await s.ask('Hello!', { maxTokens: 8 })).tokens;
  s.dispose();
});
afterAll(() => model?.dispose());
afterEach(() => void delete process.env.HOVLE_MEMORY_LIMIT_BYTES);

describe('contexts', () => {
  it('a KV cache over the limit is OUT_OF_MEMORY with the numbers, before anything is allocated', async () => {
    // 4 layers x 2 (K, V) x 32 floats (2 KV heads of 16) x 65536 positions x 4 bytes = 64 MiB of f32 cache.
    const err = await withLimit(8 * MiB, () => failure(model.createContext({ contextSize: 65536, kvType: 'f32' })));
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(err.message).toMatch(/needs 64\.0 MiB, 8\.0 MiB available in host memory \(HOVLE_MEMORY_LIMIT_BYTES\)/);
    expect(err.message).toContain('65536 positions');
    expect(err.message).toContain('contextSize');
    await healthy(reference);
  });

  it('a context reports the bytes it holds: KV caches of both segments, compute buffers', async () => {
    const sizes = async (o: Parameters<HovleModel['createContext']>[0]) => {
      const ctx = await model.createContext(o);
      const m = ctx.memory;
      ctx.dispose();
      expect(() => ctx.memory).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
      return m;
    };
    const hp = model.hparams;
    // blocks x (K + V) x positions x kv heads x head dim x bytes, per segment ("pre": same positions).
    const perPosition = [hp.embedding, hp.llm].reduce((n, s) => n + s.blockCount * 2 * s.headCountKv * (s.embeddingLength / s.headCount), 0);
    const f16 = await sizes({ contextSize: 1024, kvType: 'f16' });
    expect(f16.kvBytes).toBe(1024 * perPosition * 2);
    expect((await sizes({ contextSize: 1024, kvType: 'f32' })).kvBytes).toBe(1024 * perPosition * 4);
    expect(f16.computeBytes).toBeGreaterThan(0);
    // Without flash attention the scores of a 512-row batch against every position are a buffer.
    const noFa = await sizes({ contextSize: 1024, kvType: 'f16', flashAttention: false });
    expect(noFa.computeBytes).toBeGreaterThan(f16.computeBytes);
  });

  it('counts the compute buffers of a prefill at a full context, not only the cache', async () => {
    // 16 MiB of f16 cache fits in 100 MiB; the attention scores of a 512-token batch against
    // 32768 cached positions (4 heads, f32) are 256 MiB more.
    const err = await withLimit(100 * MiB, () => failure(model.createContext({ contextSize: 32768, kvType: 'f16', flashAttention: false })));
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(err.message).toMatch(/KV cache 16\.0 MiB \+ compute buffers [\d.]+ MiB, needs [\d.]+ MiB, 100\.0 MiB available/);
    // Flash attention (the default) does not materialise the scores: the same context fits.
    const ctx = await withLimit(100 * MiB, () => model.createContext({ contextSize: 32768, kvType: 'f16' }));
    ctx.dispose();
  });

  it('a context larger than any machine fails on the real figures too, and fast', async () => {
    // 2^31 - 1 positions of f16 cache: 1 TiB.
    const rss = process.memoryUsage().rss;
    const t0 = performance.now();
    const err = await failure(model.createContext({ contextSize: 2 ** 31 - 1 }));
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(err.message).toMatch(/needs 1048576\.0 MiB, [\d.]+ MiB available in host memory \((MemAvailable|the memory limit of cgroup|free host memory)/);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * MiB);
    await expect(model.createContext({ contextSize: 2 ** 31 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await healthy(reference);
  });

  it('a fork allocates a cache too, and is checked', async () => {
    const ctx = await model.createContext({ contextSize: 16384, kvType: 'f32', flashAttention: true });
    const err = await withLimit(4 * MiB, () => failure(ctx.fork()));
    expect(err.code).toBe('OUT_OF_MEMORY');
    const copy = await ctx.fork();
    copy.dispose();
    ctx.dispose();
  });

  it('HOVLE_MEMORY_LIMIT_BYTES must be a byte count', async () => {
    for (const bad of ['lots', '-5', '0', '12MiB']) {
      const err = await withLimit(bad, () => failure(model.createContext({ contextSize: 64 })));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain('HOVLE_MEMORY_LIMIT_BYTES');
    }
    await healthy(reference);
  });
});

describe('weights', () => {
  it('weights copied into memory (mmap off) are checked before loading', async () => {
    const err = await withLimit(MiB, () => failure(HovleModel.load(path, { mmap: false })));
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(err.message).toMatch(/copying [\d.]+ MiB of weights into memory needs [\d.]+ MiB, 1\.0 MiB available/);
    // Mapped from the file, the same weights take no memory of their own: they load.
    const mapped = await withLimit(MiB, () => HovleModel.load(path, { mmap: true }));
    mapped.dispose();
    const copied = await HovleModel.load(path, { mmap: false });
    copied.dispose();
    await healthy(reference);
  });

  it('repacked weights are copies, and are checked', async () => {
    // q4_0 matmul weights have repacked CPU kernels on AVX2 (and on Arm); f32 ones do not.
    const q4 = join(dir, 'tiny-q4_0.gguf');
    await convertCheckpoint(TINY, q4, { type: 'q4_0' });
    const probe = await HovleModel.load(q4);
    const repacked = probe.info().repackedBytes;
    probe.dispose();
    if (repacked === 0) return; // no repacking kernels on this CPU
    const err = await withLimit(Math.max(1, repacked - 1024), () => failure(HovleModel.load(q4)));
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(err.message).toContain('repack: false');
    (await withLimit(Math.max(1, repacked - 1024), () => HovleModel.load(q4, { repack: false }))).dispose();
  });
});
