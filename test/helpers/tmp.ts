import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';
import { getCurrentTest } from 'vitest/suite';

/**
 * A temporary folder, optionally a copy of `from`, removed when the test that made it finishes
 * (or, made outside a test, after the file). An afterAll registered inside a running test never
 * runs, which left ~27 folders (40 MB) in the temp dir per suite run.
 */
export function tempDir(prefix: string, from?: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hovle-${prefix}-`));
  if (from) cpSync(from, dir, { recursive: true });
  const remove = () => rmSync(dir, { recursive: true, force: true });
  if (getCurrentTest()) onTestFinished(remove);
  else afterAll(remove);
  return dir;
}

export const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
export const TINY = join(FIXTURES, 'hovle-tiny', 'hf');
export const TINY_BF16 = join(FIXTURES, 'hovle-tiny-bf16', 'hf');
export const TINY_POST = join(FIXTURES, 'hovle-tiny-post', 'hf');
