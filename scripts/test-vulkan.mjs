#!/usr/bin/env node
// Runs test/vulkan/ against the Vulkan build (npm run build:vulkan -> build-vulkan/).
// lavapipe, Mesa's software Vulkan device, reports itself as a CPU-type device, which ggml
// skips unless GGML_VK_VISIBLE_DEVICES names it; the Vulkan loader also wants XDG_RUNTIME_DIR.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addon = resolve(process.env.HOVLE_ADDON_PATH ?? join(root, 'build-vulkan', 'Release', 'hovle.node'));
if (!existsSync(addon)) {
  process.stderr.write(`[test-vulkan] no Vulkan build at ${addon}: run \`npm run build:vulkan\` first\n`);
  process.exit(1);
}
// A runtime dir made here is removed on the way out.
const xdg = process.env.XDG_RUNTIME_DIR ? undefined : mkdtempSync(join(tmpdir(), 'hovle-xdg-'));
if (xdg) process.on('exit', () => rmSync(xdg, { recursive: true, force: true }));
const env = {
  ...process.env,
  HOVLE_ADDON_PATH: addon,
  HOVLE_EXPECT_VULKAN: '1',
  GGML_VK_VISIBLE_DEVICES: process.env.GGML_VK_VISIBLE_DEVICES ?? '0',
  XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? xdg,
};
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const config = join(root, 'test', 'vulkan', 'vitest.config.ts');
// The forward pass runs twice: with ggml-vulkan's f16 shader paths disabled (must meet the
// F32 reference tolerances) and as shipped (f16 rounding, looser bound); see forward.test.ts.
const runs = [
  { files: [], extra: {} },
  { files: ['test/vulkan/forward.test.ts'], extra: { GGML_VK_DISABLE_F16: '1' } },
];
for (const run of runs) {
  const r = spawnSync(process.execPath, [vitest, 'run', '--config', config, ...run.files], {
    cwd: root,
    env: { ...env, ...run.extra },
    stdio: 'inherit',
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
