// Memory is checked before it is allocated: a context or weights that will not fit are a typed
// error with the numbers (needed, available, where the figure came from), not an allocation the
// kernel overcommits and the OOM killer settles later. HOVLE_MEMORY_LIMIT_BYTES caps what counts
// as available, so the tests do not depend on this machine's memory.
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { convertCheckpoint } from '../src/convert/convert.js';
import { readHfConfig } from '../src/convert/hf-config.js';
import { writeSyntheticModel } from '../src/convert/synthetic.js';
import { HovleError } from '../src/errors.js';
import { readGguf } from '../src/gguf/reader.js';
import { HovleModel } from '../src/runtime/model.js';
import { Session } from '../src/session/session.js';
import { loadAddon } from '../src/native/load.js';
import { fakeRoot } from './helpers/fake-root.js';
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

  it('logits at every position of a batch do not grow the compute buffers', async () => {
    // The tiny model's shapes with a 20000-token vocabulary (80 KB of logits per row): 300 rows
    // of logits are 23 MiB, four times what its graphs need otherwise (the vision graph's ~5
    // MiB). Computed in the batch's graph, they grew the buffers, which on a device is a free and
    // reallocation mid-context (Mesa lavapipe double-frees it). Head graphs of a few dozen rows
    // compute them instead.
    const h = { ...(await readHfConfig(TINY)), name: 'wide-vocab', vocabSize: 20000 };
    const wide = await HovleModel.load((await writeSyntheticModel(join(dir, 'wide.gguf'), { type: 'f16', tokenizerDir: TINY, hparams: h })).path);
    const opts = { contextSize: 512, kvType: 'f16' as const, flashAttention: true };
    // Made under an 8 MiB memory limit, which it keeps: growing past it is OUT_OF_MEMORY.
    const ctx = await withLimit(8 * MiB, () => wide.createContext({ ...opts, batchSize: 512 }));
    const before = ctx.memory.computeBytes;
    expect(before).toBeLessThan(8 * MiB);
    const ids = Array.from({ length: 300 }, (_, i) => 10 + ((i * 7) % 900));
    const all = await ctx.evaluate(ids, [], { logits: 'all' });
    expect(ctx.memory.computeBytes).toBe(before);
    // Few enough rows (every tenth: 30) are computed in the batch's own graph: the same values.
    const V = h.vocabSize;
    const ref = await wide.createContext({ ...opts, batchSize: 512 });
    const rows = ids.map((_, i) => i).filter((i) => i % 10 === 9);
    const some = await ref.evaluate(ids, [], { logits: rows });
    let d = 0;
    rows.forEach((r, k) => {
      for (let j = 0; j < V; j++) d = Math.max(d, Math.abs(all.logits[r * V + j]! - some.logits[k * V + j]!));
    });
    expect(some.logits.length).toBe(rows.length * V);
    expect(d).toBeLessThanOrEqual(1e-5);
    // Greedy picks over every row go through the same head graphs.
    await ctx.rewind(0);
    const picks = await ctx.evaluate(ids, [], { logits: 'all', greedy: true });
    const want = ids.map((_, r) => {
      const row = all.logits.subarray(r * V, (r + 1) * V);
      return row.indexOf(Math.max(...row));
    });
    expect(Array.from(picks.argmax!)).toEqual(want);
    expect(ctx.memory.computeBytes).toBe(before);
    ctx.dispose();
    ref.dispose();
    wide.dispose();
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

  it('a context larger than any machine fails on the real figures too, allocating nothing', async () => {
    // 2^31 - 1 positions of f16 cache: 1 TiB.
    const rss = process.memoryUsage().rss;
    const err = await failure(model.createContext({ contextSize: 2 ** 31 - 1 }));
    expect(err.code).toBe('OUT_OF_MEMORY');
    expect(err.message).toMatch(/needs 1048576\.0 MiB, [\d.]+ MiB available in host memory \((MemAvailable|the memory limit of cgroup|free host memory)/);
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

  it.runIf(process.platform === 'linux')('mapped weights are read in at load (prefetch); prefetch: false leaves them to the first compute', async () => {
    // A copy of its own, so that only these loads map it.
    const copy = join(dir, 'prefetch.gguf');
    copyFileSync(path, copy);
    // Resident bytes of this process's mappings of `copy` (/proc/self/smaps).
    const mappedRss = () => {
      let kb = 0;
      let inCopy = false;
      for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
        if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inCopy = line.endsWith(copy);
        else if (inCopy && line.startsWith('Rss:')) kb += Number(/(\d+)/.exec(line)![1]);
      }
      return kb * 1024;
    };
    const size = statSync(copy).size;
    // All but the token table, which is read a row per token (and left to those reads).
    const table = (await readGguf(copy)).tensors.find((t) => t.name === 'token_embd.weight')!.size;
    const progress: number[] = [];
    const eager = await HovleModel.load(copy, { onProgress: (f) => progress.push(f) });
    expect(mappedRss()).toBeGreaterThan(0.95 * (size - table));
    expect(mappedRss()).toBeLessThan(size - table / 2);
    expect(progress.at(-1)).toBe(1);
    eager.dispose();
    const lazy = await HovleModel.load(copy, { prefetch: false });
    expect(mappedRss()).toBeLessThan(0.1 * size);
    const s = await Session.create(lazy, { contextSize: 512, threads: 1 });
    expect((await s.ask('Hello!', { maxTokens: 8 })).tokens).toEqual(reference);
    // Paged in by the computes that read them (a text answer leaves the image front end out).
    expect(mappedRss()).toBeGreaterThan(0.5 * size);
    s.dispose();
    lazy.dispose();
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

// What "available in host memory" is made of (native/memory.cpp HostMemoryAvailable), on
// machines laid out as files: MemAvailable, lowered to the headroom under a cgroup's memory
// limit (limit - (usage - inactive page cache)), v2 walked up to the root, or v1.
describe.skipIf(process.platform !== 'linux')('host memory available', () => {
  const base = tempDir('host-memory');
  const available = (files: Record<string, string>) => loadAddon().addon.hostMemoryAvailable(fakeRoot(base, files));
  const meminfo = { 'proc/meminfo': 'MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n' };

  it('MemAvailable when no cgroup limits', () => {
    expect(available(meminfo)).toEqual({ known: true, bytes: 8000000 * 1024, source: 'MemAvailable in /proc/meminfo' });
    expect(available({})).toMatchObject({ known: false });
  });

  it('cgroup v2: the lowest headroom up the hierarchy, inactive page cache not counted as used', () => {
    const v2 = {
      ...meminfo,
      'proc/self/cgroup': '0::/app/web\n',
      'sys/fs/cgroup/cgroup.procs': '', 'sys/fs/cgroup/app/cgroup.procs': '', 'sys/fs/cgroup/app/web/cgroup.procs': '',
      'sys/fs/cgroup/app/web/memory.max': 'max\n', 'sys/fs/cgroup/app/web/memory.current': `${300 * MiB}\n`,
      'sys/fs/cgroup/app/memory.max': `${1000 * MiB}\n`, 'sys/fs/cgroup/app/memory.current': `${500 * MiB}\n`,
      'sys/fs/cgroup/app/memory.stat': `anon ${400 * MiB}\ninactive_file ${100 * MiB}\n`,
    };
    const a = available(v2);
    expect(a.bytes).toBe(600 * MiB);
    expect(a.source).toMatch(/^the memory limit of cgroup \/.*\/sys\/fs\/cgroup\/app$/);
    // A container sees its cgroup at the mount's root: a path that does not exist there.
    const container = { ...meminfo, 'proc/self/cgroup': '0::/kubepods/pod1\n', 'sys/fs/cgroup/cgroup.procs': '', 'sys/fs/cgroup/memory.max': `${256 * MiB}\n`, 'sys/fs/cgroup/memory.current': `${56 * MiB}\n` };
    expect(available(container).bytes).toBe(200 * MiB);
  });

  it('cgroup v1: the hierarchical limit; "unlimited" is no limit', () => {
    const dir = 'sys/fs/cgroup/memory/docker/abc';
    const v1 = (limit: number) => ({
      ...meminfo,
      'proc/self/cgroup': '5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n',
      'sys/fs/cgroup/memory/cgroup.procs': '', [`${dir}/cgroup.procs`]: '',
      [`${dir}/memory.stat`]: `hierarchical_memory_limit ${limit}\ntotal_inactive_file ${256 * MiB}\n`,
      [`${dir}/memory.usage_in_bytes`]: `${1024 * MiB}\n`,
    });
    expect(available(v1(2048 * MiB))).toMatchObject({ bytes: 1280 * MiB, source: expect.stringMatching(/docker\/abc$/) });
    expect(available(v1(9223372036854771712))).toMatchObject({ bytes: 8000000 * 1024, source: 'MemAvailable in /proc/meminfo' });
  });
});

describe('releaseBuffers', () => {
  it('detaches every array at once; a bad entry is refused before any is touched', () => {
    const { releaseBuffers } = loadAddon().addon;
    const a = new Float32Array(1 << 18);
    const b = new Float32Array(8);
    expect(() => releaseBuffers([a, 'x' as unknown as Float32Array])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => releaseBuffers(a as unknown as Float32Array[])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(a.length).toBe(1 << 18);
    releaseBuffers([a, b, a]);
    expect([a.length, b.length]).toEqual([0, 0]);
    releaseBuffers([a]); // already detached: nothing to do
  });
});
