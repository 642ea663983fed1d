import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/*.scratch.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    globalSetup: ['test/global-setup/platform.ts'],
    // Docker-backed suites share one engine and 2 cores: run files one after another.
    fileParallelism: false,
    reporters: ['default'],
  },
});
