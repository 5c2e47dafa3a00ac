/** Exit codes every subcommand uses. */
export const EXIT = {
  ok: 0,
  /** A HovleError or other runtime failure. */
  failure: 1,
  /** Bad command line. */
  usage: 2,
  /** The command ran but what it checked did not hold (e.g. `info --check` found a device disagreeing). */
  checkFailed: 3,
  /** Stopped by Ctrl-C (128 + SIGINT, as shells report it). */
  interrupted: 130,
  /** Stopped by SIGTERM (128 + 15). */
  terminated: 143,
} as const;

export interface Command {
  name: string;
  summary: string;
  /** Full --help text. */
  usage: string;
  run(argv: string[]): Promise<number>;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** An optional positive-integer flag (e.g. --threads); undefined when absent. */
export function optionalPositiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} must be a positive integer`);
  return n;
}
