#!/usr/bin/env node
// Decode against llama.cpp, pairs only: N interleaved pairs (bench/pairs.mjs) per type and
// depth, and whether they resolve a difference (the geometric mean ratio's 95% confidence
// interval). The suite's rounds and its few pairs cannot: on this VM one pair's ratio spreads
// over +-15%, so telling 0.97 from 1.00 takes a few dozen pairs. Prints a table; writes nothing.
// Each pair takes ~35 s on 2 cores at depth 0; at depth D llama-bench also prefills D tokens
// before each of its repetitions (minutes at 1024).
//
//   npm run build:ts && node bench/decode-pairs.mjs [--types q4_0,q8_0] [--pairs 20] [--depths 0]
//        [--tokens 32] [--reps 3] [--threads N] [--models DIR] [--peer-bin DIR] [--backend cpu|cuda]
//        [--no-flash] [--json FILE]
// Timing runs want a quiet machine: nothing else should be using the CPU.
import { writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { defaultComputeThreads } from '../dist/system-info.js';
import { oursModels, preparePeer } from './inputs.mjs';
import { decodePair, formatPairStats, pairStats } from './pairs.mjs';

const { values: args } = parseArgs({
  options: {
    types: { type: 'string', default: 'q4_0,q8_0' },
    pairs: { type: 'string', default: '20' },
    depths: { type: 'string', default: '0' },
    tokens: { type: 'string', default: '32' },
    reps: { type: 'string', default: '3' },
    threads: { type: 'string' },
    models: { type: 'string' },
    'peer-bin': { type: 'string' },
    backend: { type: 'string', default: 'cpu' },
    'no-flash': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
  strict: true,
});
const fail = (m) => {
  process.stderr.write(`bench/decode-pairs.mjs: ${m}\n`);
  process.exit(2);
};
const int = (name, min) => {
  const v = Number(args[name] ?? NaN);
  if (!Number.isInteger(v) || v < min) fail(`--${name} must be an integer >= ${min}, got ${args[name]}`);
  return v;
};
if (args.backend !== 'cpu' && args.backend !== 'cuda') fail(`--backend must be cpu or cuda, got ${args.backend}`);
const types = args.types.split(',');
const pairs = int('pairs', 1);
const tokens = int('tokens', 1);
const reps = int('reps', 1);
const threads = args.threads ? int('threads', 1) : defaultComputeThreads();
const depths = args.depths.split(',').map(Number);
if (depths.some((d) => !Number.isInteger(d) || d < 0)) fail(`--depths must be non-negative integers, got ${args.depths}`);
const modelsDir = resolve(args.models ?? process.env.HOVLE_BENCH_MODELS ?? join(homedir(), '.cache', 'hovle', 'bench'));
const log = (m) => process.stderr.write(`[pairs] ${m}\n`);

const ours = oursModels(modelsDir, types, log);
const peer = preparePeer({ modelsDir, types, peerBin: args['peer-bin'] ? resolve(args['peer-bin']) : undefined, log });

// Types and depths take turns pair by pair, so a slow stretch of the machine lands on all of them.
const got = Object.fromEntries(types.flatMap((t) => depths.map((d) => [`${t}@${d}`, []])));
const started = new Date();
for (let i = 0; i < pairs; i++) {
  for (const t of types) {
    for (const depth of depths) {
      const p = decodePair({
        ours: ours[t], peer: peer.models[t], llamaBench: peer.bench, threads, backend: args.backend, depth, tokens, reps,
        flash: !args['no-flash'], oursFirst: i % 2 === 0,
      });
      got[`${t}@${depth}`].push(p);
      log(`pair ${i + 1}/${pairs} ${t} depth ${depth}: ours ${p.hovle.toFixed(2)}, llama.cpp ${p.llama.toFixed(2)} tok/s, ratio ${(p.hovle / p.llama).toFixed(3)}`);
    }
  }
}

const f2 = (x) => x.toFixed(2);
const range = (x) => `${f2(Math.min(...x))}-${f2(Math.max(...x))}`;
const lines = [
  `decode pairs: ${types.join(', ')} at depth ${depths.join(', ')}; ${pairs} pairs each, ${reps} x ${tokens} tokens per side (median), ` +
    `${threads} threads, ${args.backend}, flash attention ${args['no-flash'] ? 'off' : 'on'}; llama.cpp ${peer.build.commit?.slice(0, 12) ?? '(commit unknown)'}; ` +
    `${started.toISOString().slice(0, 16)} to ${new Date().toISOString().slice(11, 16)} UTC`,
  '',
  '| type | depth | ours tok/s | llama.cpp tok/s | ratio: median (min-max), geomean, 95% CI | verdict |',
  '|---|---|---|---|---|---|',
];
for (const [key, p] of Object.entries(got)) {
  const [t, d] = key.split('@');
  const s = pairStats(p);
  lines.push(`| ${t} | ${d} | ${range(p.map((x) => x.hovle))} | ${range(p.map((x) => x.llama))} | ${formatPairStats(s)} | ${s.verdict} |`);
}
process.stdout.write(lines.join('\n') + '\n');
if (args.json) writeFileSync(args.json, JSON.stringify({ types, depths, pairs, tokens, reps, threads, backend: args.backend, started, got }, null, 1));
