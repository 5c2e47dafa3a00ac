import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/** A temporary folder removed after the test file; optionally a copy of `from`. */
export function tempDir(prefix: string, from?: string): string {
  const dir = mkdtempSync(join(tmpdir(), `hovle-${prefix}-`));
  if (from) cpSync(from, dir, { recursive: true });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
export const TINY = join(FIXTURES, 'hovle-tiny', 'hf');
export const TINY_BF16 = join(FIXTURES, 'hovle-tiny-bf16', 'hf');
export const TINY_POST = join(FIXTURES, 'hovle-tiny-post', 'hf');
