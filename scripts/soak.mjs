#!/usr/bin/env node
// Soak: many generations with images in one process, to show that memory and handles stay flat.
// Each iteration opens a session, asks about an image (the fixture photos and synthetic raw
// frames in turn), now and then asks a follow-up, forks, or aborts mid-answer, and disposes
// everything. Every --every iterations it prints RSS, V8 heap, external memory, active handles
// and open file descriptors (after a GC); at the end, the growth from the end of the warm-up to
// the end of the run (medians of the first and last quarter of the samples, as RSS swings with
// the allocator's arenas), the fitted slope, and a non-zero exit when either is over its limit.
//
//   npm run build:ts && node scripts/soak.mjs [options]
//     --model PATH        GGUF to use (default: the tiny test checkpoint, converted to q8_0 in a temp dir)
//     --iterations N      generations (default 1000)
//     --every K           sample every K iterations (default 50)
//     --warmup N          iterations before the baseline sample (default 100)
//     --max-tokens N      tokens per answer (default 16)
//     --max-tiles N       tiles per image (default 2)
//     --context N         context size of each session (default 2048)
//     --threads N         CPU threads per session (default: all cores)
//     --max-rss-growth N  MiB of RSS growth allowed after the warm-up (default 32)
//     --max-heap-growth N MiB of V8 heap growth allowed after the warm-up (default 16)
//     --json FILE         also write the samples and the verdict as JSON
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    iterations: { type: 'string', default: '1000' },
    every: { type: 'string', default: '50' },
    warmup: { type: 'string', default: '100' },
    'max-tokens': { type: 'string', default: '16' },
    'max-tiles': { type: 'string', default: '2' },
    context: { type: 'string', default: '2048' },
    threads: { type: 'string' },
    'max-rss-growth': { type: 'string', default: '32' },
    'max-heap-growth': { type: 'string', default: '16' },
    json: { type: 'string' },
  },
  strict: true,
});
const int = (name) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${name} must be a non-negative integer`);
    process.exit(2);
  }
  return v;
};
const N = int('iterations');
const EVERY = Math.max(1, int('every'));
const WARMUP = Math.min(int('warmup'), N);
const MAX_TOKENS = int('max-tokens');
const MAX_TILES = int('max-tiles');
const CONTEXT = int('context');
const SESSION = { contextSize: CONTEXT, ...(args.threads !== undefined ? { threads: int('threads') } : {}) };
const MAX_RSS_GROWTH = Number(args['max-rss-growth']);
const MAX_HEAP_GROWTH = Number(args['max-heap-growth']);

const { HovleModel, Session, convertCheckpoint } = await import(pathToFileURL(join(root, 'dist', 'index.js')).href);

// A GC before each sample, so the heap figures are live objects, not garbage not yet collected.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

let tmp;
let modelPath = args.model;
if (!modelPath) {
  tmp = mkdtempSync(join(tmpdir(), 'hovle-soak-'));
  modelPath = join(tmp, 'hovle-tiny-q8_0.gguf');
  await convertCheckpoint(join(root, 'test', 'fixtures', 'hovle-tiny', 'hf'), modelPath, { type: 'q8_0' });
}

const imageDir = join(root, 'test', 'fixtures', 'images');
const files = readdirSync(imageDir).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().map((f) => join(imageDir, f));
function frame(width, height, seed) {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + seed * 17 + (i >> 9)) & 0xff;
  return { raw: { data, width, height, format: 'rgb' } };
}
// Raw frames are made per use (as a camera delivers new buffers), so their memory must go too.
const rawSizes = [[640, 480], [1280, 720], [448, 448]];
const sources = [...files.map((f) => () => f), ...rawSizes.map(([w, h], k) => (i) => frame(w, h, i + k))];
const questions = ['What is in this picture?', 'Describe the image.', 'Any people here?', 'What colours do you see?'];

let fdsAvailable = true;
function openFds() {
  if (!fdsAvailable) return null;
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    fdsAvailable = false;
    return null;
  }
}

const MiB = 1024 * 1024;
function sample(iteration) {
  gc();
  const m = process.memoryUsage();
  return {
    iteration,
    rssMiB: m.rss / MiB,
    heapUsedMiB: m.heapUsed / MiB,
    externalMiB: m.external / MiB,
    arrayBuffersMiB: m.arrayBuffers / MiB,
    handles: process.getActiveResourcesInfo().length,
    fds: openFds(),
  };
}
const fmt = (v, w, d = 1) => (v === null ? 'n/a' : v.toFixed(d)).padStart(w);
function print(s, note = '') {
  console.log(
    `${String(s.iteration).padStart(9)} ${fmt(s.rssMiB, 8)} ${fmt(s.heapUsedMiB, 9)} ${fmt(s.externalMiB, 9)} ${fmt(s.arrayBuffersMiB, 9)} ${String(s.handles).padStart(7)} ${String(s.fds ?? 'n/a').padStart(5)}  ${((performance.now() - started) / 1000).toFixed(0).padStart(6)} s${note}`,
  );
}

const model = await HovleModel.load(modelPath);
console.log(`soak: ${N} generations with images on ${modelPath} (${model.info().device}), sample every ${EVERY}, warm-up ${WARMUP}`);
console.log('iteration  rss MiB  heap MiB  ext MiB   ab MiB  handles   fds    time');
const started = performance.now();
const samples = [sample(0)];
print(samples[0], '  (after loading)');
const counts = { asked: 0, followUps: 0, forks: 0, aborted: 0, tokens: 0 };

for (let i = 1; i <= N; i++) {
  const image = sources[i % sources.length](i);
  const question = questions[i % questions.length];
  const session = await Session.create(model, SESSION);
  try {
    const opts = { maxTokens: MAX_TOKENS, maxTiles: MAX_TILES };
    if (i % 10 === 3) {
      // Aborted mid-answer: the session and its cache must go all the same.
      const controller = new AbortController();
      let seen = 0;
      await session
        .ask({ text: question, images: [image] }, { ...opts, signal: controller.signal, onToken: () => void (++seen === 2 && controller.abort()) })
        .catch((e) => {
          if (e.code !== 'ABORTED') throw e;
          counts.aborted++;
        });
    } else {
      const r = await session.ask({ text: question, images: [image] }, opts);
      counts.tokens += r.tokens.length;
    }
    counts.asked++;
    if (i % 5 === 0) {
      await session.ask('And what else?', { maxTokens: 4 });
      counts.followUps++;
    }
    if (i % 7 === 0) {
      const fork = await session.fork();
      await fork.ask('Tell me more.', { maxTokens: 4 });
      fork.dispose();
      counts.forks++;
    }
  } finally {
    session.dispose();
  }
  if (i % EVERY === 0 || i === N || i === WARMUP) {
    const s = sample(i);
    samples.push(s);
    print(s, i === WARMUP ? '  (end of warm-up: baseline)' : '');
  }
}
const seconds = (performance.now() - started) / 1000;
model.dispose();
if (tmp) rmSync(tmp, { recursive: true, force: true });

// Verdict over the samples from the end of the warm-up on.
const after = samples.filter((s) => s.iteration >= WARMUP);
const base = after[0];
const last = after.at(-1);
function slopePer1000(key) {
  if (after.length < 3) return 0;
  const xs = after.map((s) => s.iteration);
  const ys = after.map((s) => s[key]);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let k = 0; k < xs.length; k++) {
    num += (xs[k] - mx) * (ys[k] - my);
    den += (xs[k] - mx) ** 2;
  }
  return den ? (num / den) * 1000 : 0;
}
// Medians of the first and last quarter: one sample can land on a high or a low of the swings.
const quarter = Math.max(1, Math.floor(after.length / 4));
const median = (key, xs) => {
  const v = xs.map((s) => s[key]).sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const early = after.slice(0, quarter);
const late = after.slice(-quarter);
const growth = {
  rssMiB: median('rssMiB', late) - median('rssMiB', early),
  heapUsedMiB: median('heapUsedMiB', late) - median('heapUsedMiB', early),
  externalMiB: median('externalMiB', late) - median('externalMiB', early),
  handles: last.handles - base.handles,
  fds: last.fds === null ? null : last.fds - base.fds,
};
const rssRange = [Math.min(...after.map((s) => s.rssMiB)), Math.max(...after.map((s) => s.rssMiB))];
const slope = { rssMiBPer1000: slopePer1000('rssMiB'), heapMiBPer1000: slopePer1000('heapUsedMiB') };
const failures = [];
if (growth.rssMiB > MAX_RSS_GROWTH) failures.push(`RSS grew ${growth.rssMiB.toFixed(1)} MiB after the warm-up (limit ${MAX_RSS_GROWTH})`);
// The fitted slope over the run, projected to its length: catches a steady leak whose last sample happens to be low.
if ((slope.rssMiBPer1000 * (last.iteration - base.iteration)) / 1000 > MAX_RSS_GROWTH) {
  failures.push(`RSS trend ${slope.rssMiBPer1000.toFixed(1)} MiB per 1000 iterations (limit ${MAX_RSS_GROWTH} MiB over the run)`);
}
if (growth.heapUsedMiB > MAX_HEAP_GROWTH) failures.push(`the V8 heap grew ${growth.heapUsedMiB.toFixed(1)} MiB (limit ${MAX_HEAP_GROWTH})`);
if (growth.handles > 2) failures.push(`${growth.handles} more active handles than after the warm-up`);
if (growth.fds !== null && growth.fds > 2) failures.push(`${growth.fds} more open file descriptors than after the warm-up`);

console.log(
  `\n${N} generations in ${seconds.toFixed(0)} s (${counts.asked} asked, ${counts.aborted} aborted mid-answer, ${counts.followUps} follow-ups, ${counts.forks} forks, ${counts.tokens} tokens)`,
);
console.log(
  `RSS: ${samples[0].rssMiB.toFixed(1)} MiB after loading, ${base.rssMiB.toFixed(1)} MiB after the warm-up (iteration ${base.iteration}), ` +
    `${last.rssMiB.toFixed(1)} MiB at the end (${rssRange[0].toFixed(1)} to ${rssRange[1].toFixed(1)} in between); ` +
    `growth ${growth.rssMiB.toFixed(1)} MiB (medians of the first and last ${quarter} samples), trend ${slope.rssMiBPer1000.toFixed(2)} MiB per 1000 iterations; ` +
    `peak ${(process.resourceUsage().maxRSS / 1024).toFixed(1)} MiB`,
);
console.log(
  `heap ${growth.heapUsedMiB >= 0 ? '+' : ''}${growth.heapUsedMiB.toFixed(2)} MiB, external ${growth.externalMiB >= 0 ? '+' : ''}${growth.externalMiB.toFixed(2)} MiB, ` +
    `handles ${growth.handles >= 0 ? '+' : ''}${growth.handles}, fds ${growth.fds === null ? 'n/a' : (growth.fds >= 0 ? '+' : '') + growth.fds}`,
);
console.log(failures.length ? `FAIL: ${failures.join('; ')}` : 'PASS: flat after the warm-up');
if (args.json) writeFileSync(args.json, JSON.stringify({ iterations: N, seconds, counts, samples, growth, slope, failures }, null, 2));
process.exit(failures.length ? 1 : 0);
