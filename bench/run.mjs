#!/usr/bin/env node
// The benchmark suite (`npm run bench`): the full-size synthetic HoVLE at several types, each in
// its own process (`hovle bench --json`, so peak RSS is that model's), next to llama.cpp's
// llama-bench built from the same pinned source on an InternLM2 GGUF of the same decoder shapes,
// and this machine's memory read bandwidth (the ceiling for decode). Prints a table and writes
// BENCHMARKS.md. Models are generated on first use (random weights; see scripts/).
//
//   npm run bench -- [--types f16,q8_0,q4_0,q4_k_m] [--threads N] [--rounds 3] [--reps 1] [--pairs 3] [--quick]
//                    [--prompts 2048] [--depths 0,1024,4096] [--models DIR] [--no-peer] [--no-flash]
//                    [--backend cpu|cuda] [--peer-bin DIR] [--out BENCHMARKS.md]
//
// --backend cuda puts all weights on the GPU on both sides (llama-bench -ngl 99) and measures the
// GPU's read bandwidth (bench/membw.cu) instead of the CPU's. --peer-bin takes llama-bench,
// llama-quantize (and membw-cuda, peer.json) from DIR instead of building them: how a GPU machine
// without a toolchain for them runs this (scripts/gpu-prebuild.sh, scripts/gpu-check.sh).
//
// A round runs every type once, ours and llama.cpp back to back with --reps repetitions each;
// the defaults take about 70 minutes a round for all four types on 2 cores, ~17 per type (the
// 4096-deep decode needs a 4096-token prefill on each side). --quick: 1 round, prompts of 512, decode
// depths 0 and 1024 (minutes), no pairs. After the rounds, --pairs N decode pairs per type at depth 0
// (ours and llama-bench back to back, ~35 s a pair on 2 cores; bench/pairs.mjs). bench/decode-pairs.mjs runs
// pairs alone, many of them and at other depths, for a verdict the rounds cannot give.
// Timing runs want a quiet machine: nothing else should be using the CPU.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import { cpus, homedir, totalmem, type as osType, release } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// The same median/min/max as `hovle bench` (npm run bench builds dist first).
import { spread } from '../dist/bench/measure.js';
// Both sides get the runtime's default: one thread per physical core the process may use.
import { defaultComputeThreads } from '../dist/system-info.js';
import { run } from './child.mjs';
import { oursModels, preparePeer } from './inputs.mjs';
import { decodePair, formatPairStats, pairStats } from './pairs.mjs';
import { combineRounds } from './rounds.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    types: { type: 'string', default: 'f16,q8_0,q4_0,q4_k_m' },
    threads: { type: 'string' },
    reps: { type: 'string' },
    rounds: { type: 'string' },
    pairs: { type: 'string' },
    quick: { type: 'boolean', default: false },
    prompts: { type: 'string' },
    depths: { type: 'string' },
    models: { type: 'string' },
    'no-peer': { type: 'boolean', default: false },
    'no-flash': { type: 'boolean', default: false },
    backend: { type: 'string', default: 'cpu' },
    'peer-bin': { type: 'string' },
    out: { type: 'string', default: join(root, 'BENCHMARKS.md') },
  },
  strict: true,
});

const types = args.types.split(',');
const backend = args.backend;
if (backend !== 'cpu' && backend !== 'cuda') {
  process.stderr.write(`bench/run.mjs: --backend must be cpu or cuda, got ${backend}\n`);
  process.exit(2);
}
const peerBin = args['peer-bin'] ? resolve(args['peer-bin']) : undefined;
const threads = Number(args.threads ?? defaultComputeThreads());
const reps = Number(args.reps ?? 1);
const rounds = Number(args.rounds ?? (args.quick ? 1 : 3));
// Interleaved decode pairs at depth 0 after the rounds (see measurePairs); 0 skips them.
const pairs = Number(args.pairs ?? (args.quick ? 0 : 3));
// A count that is not a positive integer would run nothing (or forever) and write no table.
for (const [name, v] of Object.entries({ threads, reps, rounds, pairs: pairs + 1 })) {
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`bench/run.mjs: --${name} must be a ${name === 'pairs' ? 'non-negative' : 'positive'} integer, got ${args[name]}\n`);
    process.exit(2);
  }
}
const list = (v) => v.split(',').map(Number);
const prompts = args.prompts ? list(args.prompts) : args.quick ? [512] : [2048];
const depths = args.depths ? list(args.depths) : args.quick ? [0, 1024] : [0, 1024, 4096];
const decodeTokens = 32;
const modelsDir = resolve(args.models ?? process.env.HOVLE_BENCH_MODELS ?? join(homedir(), '.cache', 'hovle', 'bench'));
mkdirSync(modelsDir, { recursive: true });
const log = (m) => process.stderr.write(`[bench] ${m}\n`);

/** Runs argv under GNU time for the child's peak RSS; returns stdout and the RSS in bytes. */
function timed(cmd, argv) {
  // HOVLE_GNU_TIME: where GNU time is not installed (the GPU machine's image), a carried copy.
  const r = run(process.env.HOVLE_GNU_TIME ?? '/usr/bin/time', ['-f', 'MAXRSS_KB=%M', cmd, ...argv]);
  const kb = Number(/MAXRSS_KB=(\d+)/.exec(r.stderr)?.[1] ?? NaN);
  return { stdout: r.stdout, stderr: r.stderr, peakRssBytes: kb * 1024 };
}

/** Empties the page cache when allowed (root), so the next load reads the file from disk. */
function dropCaches() {
  try {
    execFileSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}


// --- inputs -----------------------------------------------------------------------------------
const ours = oursModels(modelsDir, types, log);
const peer = args['no-peer'] ? null : preparePeer({ modelsDir, types, peerBin, log });

// --- memory bandwidth -------------------------------------------------------------------------
// With the weights on the GPU, decode reads them from device memory: bench/membw.cu measures
// that (built by scripts/gpu-prebuild.sh, or here with nvcc).
const membw = backend === 'cuda' ? join(peerBin ?? join(root, 'build-gpu'), 'membw-cuda') : join(root, 'build-peer', 'membw');
mkdirSync(dirname(membw), { recursive: true });
if (backend === 'cpu' && (!existsSync(membw) || statSync(membw).mtimeMs < statSync(join(root, 'bench', 'membw.c')).mtimeMs)) {
  run('cc', ['-O3', '-march=native', '-fopenmp', join(root, 'bench', 'membw.c'), '-o', membw]);
}
if (backend === 'cuda' && !existsSync(membw)) run('nvcc', ['-O3', '-arch=native', join(root, 'bench', 'membw.cu'), '-o', membw]);
const bandwidthSource = backend === 'cuda' ? 'GPU memory, bench/membw.cu' : `bench/membw.c, ${threads} threads`;
// Measured at the start of every round: it drifts with the rest of the machine.
const bandwidths = [];
function measureBandwidth() {
  bandwidths.push(Number(run(membw, backend === 'cuda' ? ['4096'] : ['2048', String(threads)]).stdout.trim()));
  log(`memory read bandwidth (${bandwidthSource}): ${(bandwidths.at(-1) / 1e9).toFixed(1)} GB/s`);
}

// --- measurements -----------------------------------------------------------------------------
// This VM's speed drifts by tens of percent within an hour (the same llama-bench test read 11.4
// to 16.1 tok/s), so one pass of ours followed by one of llama.cpp compares two machines. Each
// round measures every type once on both sides, alternating which side goes first; a ratio is
// the median of the per-round ratios, and the speeds shown pool every round's samples.
const cli = join(root, 'dist', 'cli', 'main.js');
const perType = Object.fromEntries(types.map((t) => [t, { hovle: [], llama: [], pairs: [], peakRssBytes: 0, llamaPeakRssBytes: 0 }]));
const results = [];

function measureOurs(t, round) {
  // Only the first round's first load can be cold; later rounds find the file cached.
  const cold = round === 0 && dropCaches();
  log(`round ${round + 1}/${rounds}: hovle ${t}${cold ? ' (page cache dropped: first load is cold)' : ''}`);
  const argv = [cli, 'bench', '-m', ours[t], '--json', '--threads', String(threads), '--reps', String(reps),
    '--prompts', prompts.join(','), '--depths', depths.join(','), '--decode', String(decodeTokens), '--tiles', '1,7', '--backend', backend,
    ...(args['no-flash'] ? ['--no-flash'] : [])];
  const r = timed(process.execPath, argv);
  const hovle = JSON.parse(r.stdout);
  hovle.coldLoad = cold;
  perType[t].hovle.push(hovle);
  perType[t].peakRssBytes = Math.max(perType[t].peakRssBytes, r.peakRssBytes);
}

function measurePeer(t, round) {
  log(`round ${round + 1}/${rounds}: llama-bench ${t}`);
  const common = ['-m', peer.models[t], '-t', String(threads), '-r', String(reps), '-o', 'json', '-fa', args['no-flash'] ? '0' : '1',
    ...(backend === 'cpu' ? [] : ['-ngl', '99'])];
  // llama-bench warms up each prompt test with a whole extra run (a 2048-token prefill costs
  // minutes on 2 cores); a 16-token test first does that job: it touches every weight.
  const pp = timed(peer.bench, [...common, '--no-warmup', '-p', [16, 300, ...prompts].join(','), '-n', '0']);
  const tg = timed(peer.bench, [...common, '-p', '0', '-n', String(decodeTokens), '-d', depths.join(',')]);
  const rows = [...JSON.parse(pp.stdout), ...JSON.parse(tg.stdout)];
  const find = (p, n, d) => rows.find((x) => x.n_prompt === p && x.n_gen === n && (x.n_depth ?? 0) === d);
  perType[t].llama.push({
    // llama-bench's micro-batch (n_ubatch, its default unless set), for the settings line.
    ubatch: rows[0].n_ubatch,
    prefill: Object.fromEntries([300, ...prompts].map((p) => [p, find(p, 0, 0).samples_ts])),
    decode: Object.fromEntries(depths.map((d) => [d, find(0, decodeTokens, d).samples_ts])),
  });
  perType[t].llamaPeakRssBytes = Math.max(perType[t].llamaPeakRssBytes, pp.peakRssBytes, tg.peakRssBytes);
}

// Interleaved pairs (bench/pairs.mjs) after the rounds: a round's ours-then-llama.cpp decode
// figures are minutes apart, and this VM drifts more than the gap between them in that time.
function measurePairs(t) {
  for (let i = 0; i < pairs; i++) {
    log(`decode pair ${i + 1}/${pairs}: ${t}`);
    perType[t].pairs.push(decodePair({
      ours: ours[t], peer: peer.models[t], llamaBench: peer.bench, threads, backend, tokens: decodeTokens, flash: !args['no-flash'], oursFirst: i % 2 === 0,
    }));
  }
}

const roundsDone = () => Math.max(...types.map((t) => perType[t].hovle.length));

/** One type's rounds as one result (bench/rounds.mjs), with the files and peak RSS. */
function combine(t) {
  const { hovle: h, llama } = combineRounds(perType[t].hovle, perType[t].llama, { prompts, depths, spread });
  if (llama) Object.assign(llama, { file: peer.models[t], fileBytes: statSync(peer.models[t]).size, peakRssBytes: perType[t].llamaPeakRssBytes });
  return { type: t, hovle: h, llama, pairs: perType[t].pairs, peakRssBytes: perType[t].peakRssBytes };
}

for (let round = 0; round < rounds; round++) {
  measureBandwidth();
  for (const t of types) {
    // Alternating the order cancels a steady drift within a round.
    const oursFirst = round % 2 === 0;
    if (oursFirst) measureOurs(t, round);
    if (peer) measurePeer(t, round);
    if (!oursFirst) measureOurs(t, round);
    results.splice(0, results.length, ...types.filter((x) => perType[x].hovle.length > 0).map(combine));
    // Written after every model of every round, so a long run that is stopped keeps what it measured.
    report(round === rounds - 1 && t === types.at(-1) && !(peer && pairs > 0));
  }
}
if (peer && pairs > 0) {
  for (const t of types) {
    measurePairs(t);
    results.splice(0, results.length, ...types.map(combine));
    report(t === types.at(-1));
  }
}

// --- report -----------------------------------------------------------------------------------
function report(final) {
  const MiB = 1024 * 1024;
  const f1 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(1));
  const f2 = (x) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(2));
  const sp = (s, f = f1) => (s ? `${f(s.median)} (${f(s.min)}-${f(s.max)})` : '-');
  // The median of the per-round ratios, and their range when there was more than one round.
  const ratio = (r) => (r ? (r.runs > 1 ? `${f2(r.median)} (${f2(r.min)}-${f2(r.max)})` : f2(r.median)) : '-');
  const bw = spread(bandwidths);
  // Medians of the pairs' speeds, then the per-pair ratios (bench/pairs.mjs).
  const pairsCell = (p) => (p.length ? `${f2(spread(p.map((x) => x.hovle)).median)} / ${f2(spread(p.map((x) => x.llama)).median)}; ${formatPairStats(pairStats(p))}` : '-');
  const bandwidth = bw.median;

  const rows = [];
  for (const { type, hovle: h, llama: l, pairs: pairRuns, peakRssBytes } of results) {
    const P = String(prompts[prompts.length - 1]);
    const img1 = h.imagePrefill['1'];
    const frontShare = img1.frontEndShare.median;
    const budget = h.fileBytes + h.kvBytes + 150 * MiB;
    rows.push({
      type,
      // A run stopped mid-round can leave the two sides with different counts.
      rounds: l && l.rounds !== h.rounds ? `${h.rounds} ours / ${l.rounds} llama.cpp` : String(h.rounds),
      file: `${(h.fileBytes / MiB).toFixed(0)} MiB`,
      load: `${h.loadFirstMs.toFixed(0)}${h.coldLoad ? ' cold' : ' first'} / ${sp(h.loadWarmMs, (x) => x.toFixed(0))} warm`,
      front: `${sp(h.imageFrontEndMs['1'], (x) => x.toFixed(0))} / ${sp(h.imageFrontEndMs['7'], (x) => x.toFixed(0))}`,
      frontShare: `${(frontShare * 100).toFixed(1)}%`,
      ppImage: sp(img1.tokensPerSecond),
      ppImageRatio: l ? ratio(l.ratios.image300) : '-',
      pp: sp(h.prefillTokensPerSecond[P]),
      ppPeer: l ? sp(l.prefill[P]) : '-',
      ppRatio: l ? ratio(l.ratios.prefill[P]) : '-',
      tg: depths.map((d) => sp(h.decodeTokensPerSecond[d], f2)).join(' / '),
      tgPeer: l ? depths.map((d) => sp(l.decode[d], f2)).join(' / ') : '-',
      tgRatio: l ? depths.map((d) => ratio(l.ratios.decode[d])).join(' / ') : '-',
      tgPairs: pairsCell(pairRuns),
      // Per depth: the weights, and the K and V of every cached position, read once per token.
      bound: depths.map((d) => {
        const bytes = h.bytesPerToken + d * h.kvBytesPerPosition;
        return `${f1(bandwidth / bytes)} (${((h.decodeTokensPerSecond[d].median * bytes) / bandwidth * 100).toFixed(0)}%)`;
      }).join(' / '),
      ttft: sp(h.timeToFirstTokenMs, (x) => x.toFixed(0)),
      rss: `${(peakRssBytes / MiB).toFixed(0)} MiB (budget ${(budget / MiB).toFixed(0)}${peakRssBytes <= budget ? ', met' : ', OVER'})${l ? `; llama.cpp ${(l.peakRssBytes / MiB).toFixed(0)}` : ''}`,
    });
  }

  const columns = [
    ['type', 'type'], ['rounds', 'rounds (each side)'], ['file', 'GGUF'], ['load', 'load ms'], ['front', 'image front end ms, 1 / 7 tiles'],
    ['frontShare', 'front end / its 256-token prefill'], ['ppImage', 'prefill tok/s, 1-tile image prompt (300)'],
    ['ppImageRatio', 'vs llama.cpp pp300 (text only: ours includes the image front end)'], ['pp', `prefill tok/s, ${prompts.at(-1)} text`], ['ppPeer', `llama.cpp pp${prompts.at(-1)}`],
    ['ppRatio', 'prefill ratio'], ['tg', `decode tok/s at depth ${depths.join(' / ')}`], ['tgPeer', 'llama.cpp decode'],
    ['tgRatio', 'decode ratio'], ['tgPairs', 'decode at depth 0, interleaved pairs: ours / llama.cpp tok/s; ratio median (min-max), geomean and its 95% CI'], ['bound', `decode bandwidth bound tok/s at depth ${depths.join(' / ')} (ours at % of it)`], ['ttft', 'first token ms, 448x448 + question'],
    ['rss', 'peak RSS (budget GGUF + KV + 150 MiB)'],
  ];

  // One table per model (transposed: the columns are too many for a terminal).
  function tableFor(r) {
    const w = Math.max(...columns.map(([, h]) => h.length));
    return columns.map(([k, h]) => `${h.padEnd(w)}  ${r[k]}`).join('\n');
  }

  // HOVLE_BENCH_COMMIT: where this tree's .git does not say (the GPU machine's copy of it).
  const commit = process.env.HOVLE_BENCH_COMMIT || spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout?.trim() || 'unknown';
  // BENCHMARKS.md itself is rewritten after every model, so it does not make the tree dirty.
  const outInTree = relative(root, resolve(args.out));
  const except = outInTree.startsWith('..') ? [] : ['--', '.', `:(exclude)${outInTree}`];
  const dirty = process.env.HOVLE_BENCH_COMMIT ? '' : spawnSync('git', ['status', '--porcelain', '--untracked-files=no', ...except], { cwd: root, encoding: 'utf8' })
    .stdout?.trim() ? ' (with uncommitted changes)' : '';
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
  const gpu = backend === 'cuda' ? spawnSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8' }).stdout?.trim() : '';
  const date = new Date().toISOString().slice(0, 10);
  const header = [
    `machine: ${cpuModel}, ${cpus().length} logical CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${osType()} ${release()}${gpu ? `; GPU ${gpu}` : ''}`,
    `hovle ${commit}${dirty}, ${date}, node ${process.version}; llama.cpp ${peer ? `${peer.build.commit?.slice(0, 12) ?? '(commit unknown: no peer.json)'} (same pinned source)` : 'not run'}`,
    `settings: ${backend === 'cpu' ? 'CPU' : `${backend.toUpperCase()}, all layers on the GPU (llama-bench -ngl 99),`} ${threads} threads, up to ${rounds} rounds of ${reps} repetition(s) each side (speeds: median (min-max) of all runs; ` +
      `ratios: median (min-max) of the per-round ratios), KV f16, flash attention ${args['no-flash'] ? 'off' : 'on'} for both; ` +
      `prefill micro-batch ${results[0]?.hovle.batchSize ?? '-'} ours, ${results[0]?.llama?.ubatch ?? '-'} llama.cpp (each side's default); ` +
      `load: mapped weights read in at load (prefetch), the first load after dropping the page cache where allowed (root); ` +
      `prompts ${prompts.join(',')}, decode ${decodeTokens} tokens at depths ${depths.join(', ')}` +
      (peer && pairs > 0 ? `; then ${pairs} interleaved decode pairs per type (fresh processes, 3 x ${decodeTokens} tokens each side)` : ''),
    `memory read bandwidth: ${(bandwidth / 1e9).toFixed(1)} GB/s (${(bw.min / 1e9).toFixed(1)}-${(bw.max / 1e9).toFixed(1)} over the rounds; ${bandwidthSource})`,
  ];
  const text = [...header, '', ...results.map((_, i) => `## ${rows[i].type}\n${tableFor(rows[i])}`)].join('\n');
  if (final) process.stdout.write(text + '\n');

  const md = [
    '# Benchmarks',
    '',
    'Written by `npm run bench` (bench/run.mjs); do not edit by hand. Models are the full-size',
    'synthetic HoVLE (random weights, real 2.6B shapes) and, for llama.cpp, an InternLM2 GGUF with',
    'the same 32 decoder layers, widths and vocabulary, quantized by llama.cpp itself. Ratios are',
    'ours / llama.cpp (above 1 is faster). The decode bound is memory bandwidth / bytes read per',
    'token: the weights of every block and the head, and the KV cache of every cached position.',
    '',
    ...header.map((h) => `- ${h}`),
    '',
    // Transposed: one column per model, one row per measurement.
    `| measurement | ${rows.map((r) => r.type).join(' | ')} |`,
    `|---|${rows.map(() => '---').join('|')}|`,
    ...columns.filter(([k]) => k !== 'type').map(([k, h]) => `| ${h} | ${rows.map((r) => r[k]).join(' | ')} |`),
    '',
    '<details><summary>raw results (JSON)</summary>',
    '',
    '```json',
    JSON.stringify({ bandwidths, threads, reps, rounds: roundsDone(), prompts, depths, results }, null, 1),
    '```',
    '</details>',
    '',
  ].join('\n');
  writeFileSync(args.out, md);
  log(`wrote ${args.out}${final ? '' : ` (round ${roundsDone()} of ${rounds} under way)`}`);
}
