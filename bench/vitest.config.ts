import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** The order the benchmarks run in: summary.bench.ts reads what the others wrote, so it is last. */
const ORDER = ['gas', 'hedging', 'overhead', 'large', 'llm', 'gateway', 'summary'];
const rank = (spec: TestSpecification) => {
  const name = /([^/\\]+)\.bench\.ts$/.exec(spec.moduleId)?.[1] ?? '';
  const i = ORDER.indexOf(name);
  return i < 0 ? ORDER.length - 1 : i; // a new benchmark runs before the summary
};

class FixedOrder extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    return [...files].sort((a, b) => rank(a) - rank(b));
  }
  override async shard(files: TestSpecification[]): Promise<TestSpecification[]> {
    return files;
  }
}

// `npm run bench`: benchmarks are vitest files under bench/ that write JSON and Markdown to
// bench/results/. Kept apart from the test suite so `vitest run` never runs them. One file at a
// time, in a fixed order: they time things, and the summary needs the others' results.
export default defineConfig({
  test: {
    include: ['bench/**/*.bench.ts'],
    testTimeout: 300_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    sequence: { sequencer: FixedOrder },
  },
});
