import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One temporary folder per run, removed at the end (DSP_KEEP_TEST_FILES=1 keeps it for debugging).
    globalSetup: ['test/support/global-setup.ts'],
  },
});
