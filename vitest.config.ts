import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds examples/models/build/ (the sample ONNX models) once before any test file runs.
    globalSetup: ['test/setup/models.ts', 'test/setup/dist.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // onnxruntime-node's native addon is not safe to load in worker_threads; forks isolate it.
    pool: 'forks',
  },
});
