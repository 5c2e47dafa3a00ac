// Interleaved decode pairs: ours (bench/decode-probe.mjs) and llama.cpp's llama-bench decoding
// back to back in fresh processes, and the statistics that say whether a set of pairs resolves a
// difference. Used by bench/run.mjs (after its rounds) and bench/decode-pairs.mjs (pairs alone).
//
// Why pairs: on this VM a decode figure moves 10-20% within the hour, more than the gap being
// measured, so a run of ours followed minutes later by one of llama.cpp compares two machine
// states. A pair compares one; alternating which side goes first cancels a steady drift.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { run } from './child.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const median = (x) => [...x].sort((a, b) => a - b)[x.length >> 1];

/**
 * One pair: `reps` x `tokens` greedy tokens at `depth` on each side, each side's speed the median
 * of its repetitions, in tok/s. Ours decodes as ask() does (one decode run on the model's
 * thread); llama-bench's -n test has no sampling at all. With a depth, llama-bench prefills it
 * again before every repetition (-d) and ours once, then rewinds to it: neither is timed.
 */
export function decodePair({ ours, peer, llamaBench, threads, backend = 'cpu', depth = 0, tokens = 32, reps = 3, flash = true, oursFirst = true }) {
  const side = {
    hovle: () => {
      const out = run(process.execPath, [join(root, 'bench', 'decode-probe.mjs'), ours, '--backend', backend, '--threads', String(threads),
        '--steps', String(tokens), '--reps', String(reps), '--depth', String(depth), ...(flash ? [] : ['--no-flash'])]).stdout;
      return median(JSON.parse(out.trim().split('\n').pop()).reps.map((x) => x.tokPerS));
    },
    llama: () => {
      const out = run(llamaBench, ['-m', peer, '-t', String(threads), '-r', String(reps), '-o', 'json', '-fa', flash ? '1' : '0',
        ...(backend === 'cpu' ? [] : ['-ngl', '99']), '-p', '0', '-n', String(tokens), ...(depth > 0 ? ['-d', String(depth)] : [])]).stdout;
      return median(JSON.parse(out)[0].samples_ts);
    },
  };
  const got = {};
  for (const k of oursFirst ? ['hovle', 'llama'] : ['llama', 'hovle']) got[k] = side[k]();
  return got;
}

// Student's t at 97.5% for 1-30 degrees of freedom; beyond, a series in 1/df about the normal's.
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];
export function t975(df) {
  if (df <= T975.length) return T975[df - 1];
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2);
}

/**
 * The ratios ours / llama.cpp of `pairs` ([{hovle, llama}] in tok/s): median, min, max, and the
 * geometric mean with its 95% confidence interval (a t interval on the log ratios, so a ratio and
 * its inverse get mirrored intervals). `verdict`: 'faster' or 'slower' when the interval excludes
 * 1, 'unresolved' when it holds 1 (or there are fewer than 2 pairs).
 */
export function pairStats(pairs) {
  const ratios = pairs.map((p) => p.hovle / p.llama);
  const n = ratios.length;
  if (n === 0) return undefined;
  const logs = ratios.map(Math.log);
  const mean = logs.reduce((a, b) => a + b, 0) / n;
  const sorted = [...ratios].sort((a, b) => a - b);
  // The middle value, or the geometric mean of the two middle ones (so that it mirrors too).
  const mid = n % 2 ? sorted[(n - 1) / 2] : Math.sqrt(sorted[n / 2 - 1] * sorted[n / 2]);
  const stats = { n, median: mid, min: sorted[0], max: sorted[n - 1], geomean: Math.exp(mean) };
  if (n < 2) return { ...stats, verdict: 'unresolved' };
  const sd = Math.sqrt(logs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  const half = t975(n - 1) * sd / Math.sqrt(n);
  const ci95 = [Math.exp(mean - half), Math.exp(mean + half)];
  return { ...stats, ci95, verdict: ci95[0] > 1 ? 'faster' : ci95[1] < 1 ? 'slower' : 'unresolved' };
}

/** pairStats as one line: "0.99 (0.83-1.01) over 8 pairs; geomean 0.97, 95% CI 0.93-1.01". */
export function formatPairStats(s) {
  if (!s) return '-';
  const f2 = (x) => x.toFixed(2);
  const base = `${f2(s.median)}${s.n > 1 ? ` (${f2(s.min)}-${f2(s.max)})` : ''} over ${s.n} pair${s.n > 1 ? 's' : ''}`;
  return s.ci95 ? `${base}; geomean ${f2(s.geomean)}, 95% CI ${f2(s.ci95[0])}-${f2(s.ci95[1])}` : base;
}
