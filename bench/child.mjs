// A child process for the bench scripts, run to completion: a failure throws with the command
// and the end of its stderr (where it was piped), so a long run stops at the step that broke.
import { spawnSync } from 'node:child_process';

/** spawnSync with UTF-8 output and room for llama-bench's JSON; throws unless it exits 0. */
export function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status})${r.stderr ? `:\n${r.stderr.slice(-4000)}` : ''}`);
  return r;
}
