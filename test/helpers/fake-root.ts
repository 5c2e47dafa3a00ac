// A directory laid out like a Linux machine's /proc and /sys (only the files given), for native
// readers that take a path prefix (native/linux_files.h).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

let n = 0;

/** Writes `files` (paths relative to the root, e.g. "proc/self/status") under a new root in `base`. */
export function fakeRoot(base: string, files: Record<string, string>): string {
  const root = join(base, `root-${n++}`);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}
