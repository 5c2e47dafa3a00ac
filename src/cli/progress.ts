// Progress on stderr: a redrawn bar on a terminal, a line per 10% otherwise (CI logs).
import { EXIT } from './command.js';
import { formatBytes } from './format.js';

export class ProgressBar {
  private lastDecile = -1;
  private lastDraw = 0;
  private readonly tty: boolean;

  constructor(private readonly label: string, private readonly quiet = false) {
    this.tty = Boolean(process.stderr.isTTY);
  }

  update(done: number, total: number, detail = ''): void {
    if (this.quiet || total <= 0) return;
    const frac = Math.min(1, done / total);
    if (this.tty) {
      const now = Date.now();
      if (now - this.lastDraw < 100 && frac < 1) return;
      this.lastDraw = now;
      const width = 30;
      const filled = Math.round(frac * width);
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      const line = `${this.label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${detail}`;
      // \x1b[K clears what a longer line drew before.
      process.stderr.write(`\r${line.slice(0, (process.stderr.columns || 120) - 1)}\x1b[K`);
    } else {
      const decile = Math.floor(frac * 10);
      if (decile === this.lastDecile) return;
      this.lastDecile = decile;
      process.stderr.write(`${this.label}: ${decile * 10}% (${formatBytes(done)} of ${formatBytes(total)})\n`);
    }
  }

  done(): void {
    if (!this.quiet && this.tty) process.stderr.write('\n');
  }
}

/** The signal that interrupted the command, if one did. */
export let interruptedBy: 'SIGINT' | 'SIGTERM' | undefined;

/** The exit code of a command stopped by interruptSignal(): 128 + the signal's number. */
export function interruptedExit(): number {
  return interruptedBy === 'SIGTERM' ? EXIT.terminated : EXIT.interrupted;
}

/**
 * An AbortSignal that fires on Ctrl-C or SIGTERM, so long work stops cleanly and removes its
 * partial files. The handlers stay until dispose(): a second Ctrl-C while the work unwinds (it
 * finishes the chunk in progress first) must not kill the process with the partial file left.
 */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const on = (sig: 'SIGINT' | 'SIGTERM') => () => {
    interruptedBy ??= sig;
    controller.abort(new Error(`interrupted (${sig})`));
  };
  const onSigint = on('SIGINT');
  const onSigterm = on('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
    },
  };
}
