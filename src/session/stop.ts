// Stop strings across token boundaries: text that could be the start of a stop string is held
// back until the next pieces show whether it is, so a caller never receives part of a stop
// string (OpenAI's semantics: the stop sequence is not in the output).
import { HovleError } from '../errors.js';

export class StopMatcher {
  private held = '';
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s === '')) {
      throw new HovleError('INVALID_ARGUMENT', 'stop must be an array of non-empty strings');
    }
    this.stops = [...stops];
  }

  /** Adds decoded text; returns what may be shown now and whether a stop string was reached. */
  push(piece: string): { emit: string; stopped: boolean } {
    const pending = this.held + piece;
    // Emitted text never ends in a stop string's prefix, so a match starts inside `pending`.
    let at = -1;
    for (const s of this.stops) {
      const i = pending.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.held = '';
      return { emit: pending.slice(0, at), stopped: true };
    }
    const keep = this.longestPrefixSuffix(pending);
    this.held = pending.slice(pending.length - keep);
    return { emit: pending.slice(0, pending.length - keep), stopped: false };
  }

  /** The end of generation: whatever is held is text after all (unless `tail` completes a stop). */
  finish(tail: string): { emit: string; stopped: boolean } {
    const r = this.push(tail);
    if (r.stopped) return r;
    const emit = r.emit + this.held;
    this.held = '';
    return { emit, stopped: false };
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private longestPrefixSuffix(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, text.length); k > best; k--) {
        if (text.endsWith(s.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}
