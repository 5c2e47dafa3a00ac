/** Exit codes every subcommand uses. */
export const EXIT = {
  ok: 0,
  /** A HovleError or other runtime failure. */
  failure: 1,
  /** Bad command line. */
  usage: 2,
  /** The command ran but what it checked did not hold (e.g. `info --check` found a device disagreeing). */
  checkFailed: 3,
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
