import { parseArgs } from 'node:util';

import { benchModel, type BenchResult, type Spread } from '../bench/measure.js';
import { EXIT, UsageError, type Command } from './command.js';
import { formatBytes, table } from './format.js';
import { checkModelFlags, contextOptions, modelFlags, modelFlagsUsage } from './model-flags.js';

const usage = `Usage: hovle bench -m MODEL.gguf [options]

Measures one model on this machine: load time, the image front end, prefill and decode speed,
time to first token for a 448x448 frame, peak memory. Prints a table (median, min-max over the
repetitions) or JSON. \`npm run bench\` runs this for several quantizations next to llama.cpp.

      --reps N           repetitions of each measurement (default 3)
      --prompts LIST     text prompt lengths for prefill (default 2048)
      --depths LIST      cached tokens before decoding (default 0,1024,4096)
      --decode N         tokens per decode measurement (default 32)
      --tiles LIST       image tiles per image prompt (default 1,7)
      --json             print the result as JSON
  -h, --help

${modelFlagsUsage}
(bench sizes each context for its prompt and depth: --ctx-size does not apply)`;

function intList(value: string | undefined, flag: string, min: number): number[] | undefined {
  if (value === undefined) return undefined;
  const list = value.split(',').filter((s) => s !== '').map(Number);
  if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < min)) throw new UsageError(`${flag} must be a comma-separated list of integers >= ${min}`);
  return list;
}

const fmt = (s: Spread, digits = 1) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}-${s.max.toFixed(digits)})`;

export function benchTable(r: BenchResult): string {
  const rows: string[][] = [
    ['load, first (ms)', r.loadFirstMs.toFixed(0)],
    ['load, warm (ms)', fmt(r.loadWarmMs, 0)],
  ];
  for (const [tiles, s] of Object.entries(r.imageFrontEndMs)) rows.push([`image front end, ${tiles} tile(s) (ms)`, fmt(s)]);
  for (const [tiles, p] of Object.entries(r.imagePrefill)) {
    rows.push([`prefill, ${tiles}-tile image prompt of ${p.tokens} (tok/s)`, fmt(p.tokensPerSecond)]);
    rows.push([`  front end share of it (%)`, fmt({ ...p.frontEndShare, median: p.frontEndShare.median * 100, min: p.frontEndShare.min * 100, max: p.frontEndShare.max * 100 })]);
  }
  for (const [n, s] of Object.entries(r.prefillTokensPerSecond)) rows.push([`prefill, ${n} text tokens (tok/s)`, fmt(s)]);
  for (const [d, s] of Object.entries(r.decodeTokensPerSecond)) rows.push([`decode at depth ${d} (tok/s)`, fmt(s, 2)]);
  rows.push(['time to first token, 448x448 (ms)', fmt(r.timeToFirstTokenMs, 0)]);
  rows.push(['peak RSS', formatBytes(r.peakRssBytes)]);
  const types = Object.entries(r.weightTypes).map(([t, n]) => `${n} ${t}`).join(', ');
  return [
    `${r.model}: ${formatBytes(r.fileBytes)} (${types}); ${formatBytes(r.bytesPerToken)} of weights per decoded token`,
    `device ${r.device}, threads ${r.threads ?? 'all'}, KV ${r.kvType} (${formatBytes(r.kvBytes)})${r.flashAttention ? ', flash attention' : ''}`,
    '',
    table(['measurement', 'median (min-max)'], rows),
  ].join('\n');
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...modelFlags,
      reps: { type: 'string', default: '3' },
      prompts: { type: 'string' },
      depths: { type: 'string' },
      decode: { type: 'string' },
      tiles: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const { path, backend, gpuLayers } = checkModelFlags(values);
  if (values['ctx-size'] !== undefined) throw new UsageError('--ctx-size does not apply: bench sizes each context for its prompt and depth');
  const reps = intList(values.reps, '--reps', 1)![0]!;
  const prompts = intList(values.prompts, '--prompts', 1);
  const depths = intList(values.depths, '--depths', 0);
  const decode = intList(values.decode, '--decode', 1)?.[0];
  const tiles = intList(values.tiles, '--tiles', 1);
  const ctx = contextOptions(values);
  const quiet = values.quiet || values.json;
  const result = await benchModel(path, {
    load: { backend, ...(gpuLayers !== undefined ? { gpuLayers } : {}) },
    context: { kvType: ctx.kvType!, flashAttention: ctx.flashAttention!, ...(ctx.threads !== undefined ? { threads: ctx.threads } : {}) },
    reps,
    ...(prompts ? { prompts } : {}),
    ...(depths ? { depths } : {}),
    ...(decode ? { decodeTokens: decode } : {}),
    ...(tiles ? { imageTiles: tiles } : {}),
    ...(quiet ? {} : { onStep: (label: string) => process.stderr.write(`bench: ${label}\n`) }),
  });
  process.stdout.write((values.json ? JSON.stringify(result, null, 2) : benchTable(result)) + '\n');
  return EXIT.ok;
}

export const benchCommand: Command = { name: 'bench', summary: 'measure load, prefill, decode and memory of one model', usage, run };
