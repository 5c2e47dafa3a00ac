import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The Vulkan comparison needs the Vulkan build and its own environment: scripts/test-vulkan.mjs.
    exclude: ['test/vulkan/**', 'node_modules/**'],
    testTimeout: 60_000,
    pool: 'forks',
  },
});
