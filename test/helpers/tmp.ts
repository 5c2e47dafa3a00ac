import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';
import { getCurrentTest } from 'vitest/suite';

// Folders made outside a test (at collection, or in a hook), removed after the file. The hook is
// registered here, while the importing file is collected: one registered later, from a hook or
// from inside a running test, never runs, which left ~27 folders (40 MB) per suite run.
const madeOutsideTests = new Set<string>();
afterAll(() => {
  for (const dir of madeOutsideTests) rmSync(dir, { recursive: true, force: true });
  madeOutsideTests.clear();
});

/** A temporary folder, optionally a copy of `from`, removed when the test that made it finishes (or after the file). */
export function tempDir(prefix: string, from?: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hovle-${prefix}-`));
  if (from) cpSync(from, dir, { recursive: true });
  if (getCurrentTest()) onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  else madeOutsideTests.add(dir);
  return dir;
}

export const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
export const TINY = join(FIXTURES, 'hovle-tiny', 'hf');
export const TINY_BF16 = join(FIXTURES, 'hovle-tiny-bf16', 'hf');
export const TINY_POST = join(FIXTURES, 'hovle-tiny-post', 'hf');
