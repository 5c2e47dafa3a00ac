import { defineConfig } from 'vitest/config';

// Used by scripts/test-vulkan.mjs only (it sets HOVLE_ADDON_PATH to the Vulkan build).
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/vulkan/**/*.test.ts'],
    testTimeout: 120_000,
    pool: 'forks',
  },
});
