import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { UsageError } from '../src/cli/command.js';
import { pullCommand } from '../src/cli/pull.js';
import { readGguf } from '../src/gguf/reader.js';
import { downloadFile } from '../src/hub/download.js';
import { hovleCacheDir, hubEndpoint, hubToken, parseRepoId, resolveUrl, treeUrl } from '../src/hub/endpoint.js';
import { pullModel, type PullOptions, type PullProgress } from '../src/hub/pull.js';
import { HovleModel } from '../src/runtime/model.js';
import { readFolder, sha256, startFakeHub, type FakeHub, type FakeHubOptions } from './helpers/fake-hub.js';
import { readSt, writeSt } from './helpers/safetensors.js';
import { tempDir, TINY } from './helpers/tmp.js';

const REPO = 'OpenGVLab/HoVLE';
const FILES = readFolder(TINY);
const WEIGHTS = FILES['model.safetensors']!;
const CHECKPOINT_BYTES = Object.values(FILES).reduce((a, b) => a + b.length, 0);
// What a real repo also holds and pull must not fetch.
const EXTRAS = {
  'README.md': Buffer.from('# HoVLE\n'),
  'pytorch_model.bin': Buffer.alloc(1000, 1),
  'onnx/model.safetensors': Buffer.alloc(100, 2),
  'examples/image1.jpg': Buffer.alloc(10, 3),
};

const root = tempDir('pull');
let caches = 0;
const freshCache = () => join(root, `cache-${caches++}`);
const snapshotDir = (cache: string) => join(cache, 'hub', 'OpenGVLab--HoVLE', 'main');

const hubs: FakeHub[] = [];
async function hub(options: Partial<FakeHubOptions> = {}): Promise<FakeHub> {
  const h = await startFakeHub({ repos: { [REPO]: { ...FILES, ...EXTRAS } }, ...options });
  hubs.push(h);
  return h;
}

const opts = (h: FakeHub, cacheDir: string, more: PullOptions = {}): PullOptions => ({ endpoint: h.endpoint, cacheDir, type: 'q8_0', retryDelayMs: 5, ...more });
const fileRequests = (h: FakeHub, file: string) => h.requests.filter((r) => r.file === file && r.status !== 302);

// The developer's own hub settings must not leak into these tests.
const ENV_KEYS = ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_ENDPOINT', 'HOVLE_CACHE'] as const;
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
beforeAll(() => {
  for (const k of ENV_KEYS) delete process.env[k];
});
afterAll(async () => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  await Promise.all(hubs.map((h) => h.close()));
});

describe('hub endpoint and names', () => {
  it('validates repo ids as the hub does', () => {
    expect(parseRepoId('OpenGVLab/HoVLE')).toEqual({ owner: 'OpenGVLab', name: 'HoVLE', id: 'OpenGVLab/HoVLE' });
    expect(parseRepoId('a-b_c.d/x.y-z1').name).toBe('x.y-z1');
    for (const bad of ['HoVLE', 'a/b/c', 'a/b--c', '../x', 'a/.b', 'a b/c', 'a/b.git', 'a/', '/b', `a/${'x'.repeat(97)}`]) {
      expect(() => parseRepoId(bad), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
  });

  it('reads HF_ENDPOINT, HF_TOKEN and the cache folder from the environment', () => {
    expect(hubEndpoint({})).toBe('https://huggingface.co');
    expect(hubEndpoint({ HF_ENDPOINT: 'http://mirror.local:8080/' })).toBe('http://mirror.local:8080');
    expect(() => hubEndpoint({ HF_ENDPOINT: 'ftp://x' })).toThrow(/HF_ENDPOINT/);
    expect(hubToken({ HF_TOKEN: '' })).toBeUndefined();
    expect(hubToken({ HUGGING_FACE_HUB_TOKEN: 'old' })).toBe('old');
    expect(hubToken({ HF_TOKEN: 'new', HUGGING_FACE_HUB_TOKEN: 'old' })).toBe('new');
    expect(hovleCacheDir({ HOVLE_CACHE: '/c', XDG_CACHE_HOME: '/x' })).toBe('/c');
    expect(hovleCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(join('/x', 'hovle'));
    expect(hovleCacheDir({})).toMatch(/\.cache[/\\]hovle$/);
  });

  it('builds the hub URLs, revision and path segments encoded', () => {
    const repo = parseRepoId(REPO);
    expect(treeUrl('https://hf.co', repo, 'refs/pr/1')).toBe('https://hf.co/api/models/OpenGVLab/HoVLE/tree/refs%2Fpr%2F1?recursive=true');
    expect(resolveUrl('https://hf.co', repo, 'main', 'sub dir/a#b.json')).toBe('https://hf.co/OpenGVLab/HoVLE/resolve/main/sub%20dir/a%23b.json');
  });
});

describe('pullModel', () => {
  it('downloads only what the converter reads, verifies, converts and caches; a second pull does nothing', async () => {
    const h = await hub({ pageSize: 3 });
    const cache = freshCache();
    const events: PullProgress[] = [];
    const r = await pullModel(REPO, opts(h, cache, { onProgress: (p) => events.push(p) }));

    expect(r).toMatchObject({ type: 'q8_0', repo: REPO, revision: 'main', commit: h.commitOf(REPO), converted: true, downloadedBytes: CHECKPOINT_BYTES, checkpointBytes: CHECKPOINT_BYTES });
    expect(r.path).toBe(join(cache, 'models', 'OpenGVLab--HoVLE', 'main', 'HoVLE-q8_0.gguf'));
    expect(r.bytes).toBe(statSync(r.path).size);
    const gguf = await readGguf(r.path);
    expect(gguf.metadata.get('general.name')).toMatchObject({ value: 'HoVLE' });
    expect(gguf.metadata.get('general.file_type')).toMatchObject({ value: 7 });
    const model = await HovleModel.load(r.path);
    model.dispose();

    expect(h.requests.filter((q) => q.url.startsWith('/api/')).length).toBeGreaterThan(1); // paginated tree
    expect(new Set(h.requests.flatMap((q) => q.file ?? []))).toEqual(new Set(Object.keys(FILES)));
    const cdn = h.requests.filter((q) => q.server === 'cdn');
    expect(cdn.map((q) => q.file).sort()).toEqual(['model.safetensors', 'tokenizer.model']);
    // Downloads come from the commit the tree named, so a moving branch cannot mix two versions.
    expect(h.requests.filter((q) => q.url.includes('/resolve/')).every((q) => q.url.includes(`/resolve/${h.commitOf(REPO)}/`))).toBe(true);
    // The checkpoint is deleted once converted, by default.
    expect(existsSync(snapshotDir(cache))).toBe(false);

    const download = events.filter((e) => e.phase === 'download');
    expect(download.at(-1)).toMatchObject({ file: 'model.safetensors', bytesDone: WEIGHTS.length, bytesTotal: WEIGHTS.length });
    expect(events.at(-1)).toMatchObject({ phase: 'convert' });

    const seen = h.requests.length;
    const mtime = statSync(r.path).mtimeMs;
    const again = await pullModel(REPO, opts(h, cache));
    expect(again).toMatchObject({ path: r.path, converted: false, downloadedBytes: 0, bytes: r.bytes, checkpointBytes: CHECKPOINT_BYTES });
    expect(h.requests.slice(seen).every((q) => q.url.startsWith('/api/models/'))).toBe(true);
    expect(statSync(r.path).mtimeMs).toBe(mtime);
  });

  it('resumes a dropped connection with a Range request and checks the sha256 of the whole file', async () => {
    const h = await hub({ dropAfter: { 'model.safetensors': 700_000 } });
    const r = await pullModel(REPO, opts(h, freshCache(), { type: 'f16', keepCheckpoint: true }));
    const [first, second, ...rest] = fileRequests(h, 'model.safetensors');
    expect(rest).toEqual([]);
    expect(first).toMatchObject({ status: 200, bytesSent: 700_000 });
    expect(first!.range).toBeUndefined();
    // Resumed from the bytes the client had, not from 0: together the two responses carried the file once.
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(second?.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(700_000);
    expect(second).toMatchObject({ status: 206, bytesSent: WEIGHTS.length - resumedAt });
    expect(r.downloadedBytes).toBe(CHECKPOINT_BYTES);
    expect(r.checkpointDir).toBe(snapshotDir(r.path.split('/models/')[0]!));
    expect(sha256(readFileSync(join(r.checkpointDir!, 'model.safetensors')))).toBe(sha256(WEIGHTS));
    expect(existsSync(join(r.checkpointDir!, 'model.safetensors.incomplete'))).toBe(false);
    expect((await readGguf(r.path)).metadata.get('general.file_type')).toMatchObject({ value: 1 });
  });

  it('an aborted download keeps its partial file, and the next pull resumes it', async () => {
    const h = await hub({ stallAfter: { 'model.safetensors': 500_000 } });
    const cache = freshCache();
    const ac = new AbortController();
    const onProgress = (p: PullProgress) => {
      if (p.phase === 'download' && p.bytesDone >= 500_000) ac.abort(new Error('test abort'));
    };
    await expect(pullModel(REPO, opts(h, cache, { signal: ac.signal, onProgress }))).rejects.toMatchObject({ name: 'HovleError', code: 'ABORTED' });
    const partial = join(snapshotDir(cache), 'model.safetensors.incomplete');
    expect(statSync(partial).size).toBe(500_000);

    const r = await pullModel(REPO, opts(h, cache));
    expect(fileRequests(h, 'model.safetensors').at(-1)).toMatchObject({ status: 206, range: 'bytes=500000-' });
    expect(r.downloadedBytes).toBe(WEIGHTS.length - 500_000); // the small files were complete too
    expect(existsSync(snapshotDir(cache))).toBe(false);
    expect((await readGguf(r.path)).tensors.length).toBeGreaterThan(0);
  });

  it('bytes that do not match the hub sha256 fail the pull and are not kept', async () => {
    const h = await hub({ corrupt: ['model.safetensors'] });
    const cache = freshCache();
    await expect(pullModel(REPO, opts(h, cache))).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringMatching(/sha256 [0-9a-f]{64} does not match/) });
    expect(existsSync(join(snapshotDir(cache), 'model.safetensors'))).toBe(false);
    expect(existsSync(join(snapshotDir(cache), 'model.safetensors.incomplete'))).toBe(false);
    expect(existsSync(join(cache, 'models', 'OpenGVLab--HoVLE', 'main', 'HoVLE-q8_0.gguf'))).toBe(false);
  });

  it('reports a missing repo or revision; retries a 503', async () => {
    const h = await hub({ failOnce: { 'config.json': 503 } });
    const cache = freshCache();
    await expect(pullModel('OpenGVLab/Nope', opts(h, cache))).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringMatching(/OpenGVLab\/Nope@main: not found \(HTTP 404/) });
    await expect(pullModel(REPO, opts(h, cache, { revision: 'v9' }))).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringMatching(/revision not found/) });
    await expect(pullModel('not-a-repo', opts(h, cache))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const r = await pullModel(REPO, opts(h, cache, { revision: h.commitOf(REPO), type: 'f16' }));
    expect(r.path).toBe(join(cache, 'models', 'OpenGVLab--HoVLE', h.commitOf(REPO), 'HoVLE-f16.gguf'));
    expect(fileRequests(h, 'config.json').map((q) => q.status)).toEqual([503, 200]);
  });

  it('a private repo needs HF_TOKEN, which goes to the hub and never to the CDN', async () => {
    const h = await hub({ token: 'hf_secret' });
    const cache = freshCache();
    await expect(pullModel(REPO, opts(h, cache))).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringMatching(/HTTP 401.*set HF_TOKEN/) });
    await expect(pullModel(REPO, opts(h, cache, { token: 'hf_wrong' }))).rejects.toMatchObject({ message: expect.stringMatching(/HF_TOKEN does not grant access/) });
    const seen = h.requests.length;
    process.env.HF_TOKEN = 'hf_secret';
    try {
      const r = await pullModel(REPO, opts(h, cache));
      expect(r.converted).toBe(true);
    } finally {
      delete process.env.HF_TOKEN;
    }
    const ok = h.requests.slice(seen);
    expect(ok.filter((q) => q.server === 'hub').every((q) => q.authorization === 'Bearer hf_secret')).toBe(true);
    expect(ok.filter((q) => q.server === 'cdn').length).toBe(2);
    expect(ok.filter((q) => q.server === 'cdn').every((q) => q.authorization === undefined && q.status === 200)).toBe(true);
  });

  it('refuses repos without safetensors weights or without a config before downloading anything', async () => {
    const { 'model.safetensors': _, ...noWeights } = FILES;
    const { 'config.json': __, ...noConfig } = FILES;
    const h = await startFakeHub({ repos: { 'x/bin-only': { ...noWeights, 'pytorch_model.bin': Buffer.alloc(10) }, 'x/no-config': noConfig } });
    hubs.push(h);
    await expect(pullModel('x/bin-only', opts(h, freshCache()))).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID', message: expect.stringMatching(/no safetensors weights.*only pytorch_model\.bin/) });
    await expect(pullModel('x/no-config', opts(h, freshCache()))).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID', message: expect.stringMatching(/no config\.json/) });
    expect(h.requests.every((q) => q.url.startsWith('/api/'))).toBe(true);
  });

  it('downloads the shards the index names (and no other safetensors)', async () => {
    const tensors = [...readSt(join(TINY, 'model.safetensors'))];
    const half = Math.ceil(tensors.length / 2);
    const dir = tempDir('shards');
    const shards: Record<string, Buffer> = {};
    const weightMap: Record<string, string> = {};
    for (const [i, part] of [tensors.slice(0, half), tensors.slice(half)].entries()) {
      const name = `model-0000${i + 1}-of-00002.safetensors`;
      writeSt(join(dir, name), new Map(part));
      shards[name] = readFileSync(join(dir, name));
      for (const [t] of part) weightMap[t] = name;
    }
    const { 'model.safetensors': _, ...rest } = FILES;
    const repo = { ...rest, ...shards, 'model.safetensors.index.json': Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap })), 'adapter.safetensors': Buffer.alloc(64) };
    const h = await startFakeHub({ repos: { 'x/sharded': repo } });
    hubs.push(h);
    const r = await pullModel('x/sharded', opts(h, freshCache(), { type: 'f16' }));
    expect(r.checkpointBytes).toBe(Object.entries(repo).filter(([p]) => p !== 'adapter.safetensors').reduce((a, [, b]) => a + b.length, 0));
    expect(h.requests.some((q) => q.file === 'adapter.safetensors')).toBe(false);
    expect(h.requests.filter((q) => q.server === 'cdn').map((q) => q.file).sort()).toEqual([...Object.keys(shards), 'tokenizer.model'].sort());
    expect((await readGguf(r.path)).tensors.length).toBeGreaterThan(0);
  });
});

describe('downloadFile', () => {
  const dest = (name: string) => {
    const dir = join(root, 'dl');
    mkdirSync(dir, { recursive: true });
    return join(dir, name);
  };
  const url = (h: FakeHub) => resolveUrl(h.endpoint, parseRepoId(REPO), 'main', 'model.safetensors');
  const base = { size: WEIGHTS.length, sha256: sha256(WEIGHTS), retryDelayMs: 5 };

  it('starts over when the server answers a Range request with the whole file', async () => {
    const h = await hub({ ignoreRange: true });
    const path = dest('ignored-range.safetensors');
    writeFileSync(`${path}.incomplete`, WEIGHTS.subarray(0, 1000));
    const r = await downloadFile(url(h), path, base);
    expect(r).toMatchObject({ resumedFrom: 1000, downloadedBytes: WEIGHTS.length, bytes: WEIGHTS.length });
    expect(fileRequests(h, 'model.safetensors')).toMatchObject([{ range: 'bytes=1000-', status: 200 }]);
    expect(sha256(readFileSync(path))).toBe(sha256(WEIGHTS));
  });

  it('a partial file holding other bytes is caught by the hash and downloaded afresh', async () => {
    const h = await hub();
    const path = dest('stale.safetensors');
    writeFileSync(`${path}.incomplete`, Buffer.alloc(1000, 7));
    const r = await downloadFile(url(h), path, base);
    expect(r).toMatchObject({ resumedFrom: 0, downloadedBytes: WEIGHTS.length });
    const reqs = fileRequests(h, 'model.safetensors');
    expect(reqs.map((q) => q.range)).toEqual(['bytes=1000-', undefined]);
    expect(sha256(readFileSync(path))).toBe(sha256(WEIGHTS));
  });

  it('a stalled connection times out and resumes', async () => {
    const h = await hub({ stallAfter: { 'model.safetensors': 300_000 } });
    const path = dest('stalled.safetensors');
    const r = await downloadFile(url(h), path, { ...base, idleTimeoutMs: 200 });
    expect(r).toMatchObject({ resumedFrom: 0, downloadedBytes: WEIGHTS.length });
    expect(fileRequests(h, 'model.safetensors').map((q) => q.range)).toEqual([undefined, expect.stringMatching(/^bytes=[1-9]\d*-$/)]);
    expect(sha256(readFileSync(path))).toBe(sha256(WEIGHTS));
  });

  it('gives up on a server that keeps failing, with a typed error', async () => {
    const h = await hub();
    await expect(downloadFile(`${h.endpoint}/OpenGVLab/HoVLE/resolve/main/missing.bin`, dest('missing.bin'), base)).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringMatching(/file not found/) });
    await h.close();
    await expect(downloadFile(url(h), dest('closed.safetensors'), { ...base, retries: 2, retryDelayMs: 1 })).rejects.toMatchObject({ code: 'DOWNLOAD_FAILED', message: expect.stringMatching(/gave up after 3 attempts/) });
  });
});

describe('hovle pull (command)', () => {
  function capture() {
    let out = '';
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out += chunk.toString();
      return true;
    });
    return { text: () => out, restore: () => spy.mockRestore() };
  }

  it('pulls with --json, then finds it cached; -o writes elsewhere', async () => {
    const h = await hub();
    process.env.HF_ENDPOINT = h.endpoint;
    process.env.HOVLE_CACHE = freshCache();
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      let c = capture();
      expect(await pullCommand.run([REPO, '--type', 'q8_0', '--json'])).toBe(0);
      c.restore();
      const json = JSON.parse(c.text());
      expect(json).toMatchObject({ type: 'q8_0', repo: REPO, converted: true, downloadedBytes: CHECKPOINT_BYTES });
      expect(json.path).toBe(join(process.env.HOVLE_CACHE, 'models', 'OpenGVLab--HoVLE', 'main', 'HoVLE-q8_0.gguf'));
      expect(json.bytes).toBe(statSync(json.path).size);

      c = capture();
      expect(await pullCommand.run([REPO, '-t', 'q8_0'])).toBe(0);
      c.restore();
      // stdout is the path alone, for $(hovle pull ...).
      expect(c.text()).toBe(`${json.path}\n`);

      const out = join(root, 'explicit.gguf');
      c = capture();
      expect(await pullCommand.run([REPO, '-t', 'f16', '-o', out, '--keep-checkpoint'])).toBe(0);
      c.restore();
      expect(c.text()).toBe(`${out}\n`);
      expect(existsSync(join(snapshotDir(process.env.HOVLE_CACHE), 'model.safetensors'))).toBe(true);
    } finally {
      stderr.mockRestore();
      delete process.env.HF_ENDPOINT;
      delete process.env.HOVLE_CACHE;
    }
  });

  it('rejects bad command lines as usage errors and documents its flags', async () => {
    await expect(pullCommand.run([])).rejects.toBeInstanceOf(UsageError);
    await expect(pullCommand.run(['HoVLE'])).rejects.toBeInstanceOf(UsageError);
    await expect(pullCommand.run([REPO, '--type', 'q3_k'])).rejects.toBeInstanceOf(UsageError);
    await expect(pullCommand.run([REPO, '--revision', '../x'])).rejects.toBeInstanceOf(UsageError);
    await expect(pullCommand.run([REPO, '--threads', '0'])).rejects.toBeInstanceOf(UsageError);
    for (const s of ['--type', '--revision', '--output', '--keep-checkpoint', '--json', 'HF_ENDPOINT', 'HF_TOKEN', 'HOVLE_CACHE', 'q4_k_m']) {
      expect(pullCommand.usage).toContain(s);
    }
  });
});
