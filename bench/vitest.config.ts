import { defineConfig } from 'vitest/config';

// `npm run bench`: benchmarks are vitest files under bench/ that write JSON and Markdown to
// bench/results/. Kept apart from the test suite so `vitest run` never runs them.
export default defineConfig({
  test: {
    include: ['bench/**/*.bench.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
