import type { AskResult } from '../session/session.js';

/** The one-line summary ask and chat print to stderr after an answer. */
export function formatStats(r: AskResult): string {
  const s = r.stats;
  return (
    `[${r.tokens.length} tokens, ${r.stopReason}; prompt ${s.promptTokens} tokens at ${s.prefillTokensPerSecond.toFixed(1)} tok/s, ` +
    `${s.decodeTokensPerSecond.toFixed(1)} tok/s generating, first token after ${Math.round(s.timeToFirstTokenMs)} ms]`
  );
}
