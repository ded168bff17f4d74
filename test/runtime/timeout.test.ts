import { describe, expect, it } from 'vitest';
import { withTimeout } from '../../src/runtime/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Work shaped like onnxruntime-node's `run`: it blocks the event loop inside a setImmediate. */
function blocking(ms: number): Promise<string> {
  return new Promise((resolve) =>
    setImmediate(() => {
      const until = performance.now() + ms;
      while (performance.now() < until);
      resolve('done');
    }),
  );
}

describe('withTimeout', () => {
  it('answers RUN_TIMEOUT when the limit passes, for work that yields to the event loop', async () => {
    const started = performance.now();
    await expect(withTimeout(sleep(2_000), 50, 'a sleeper')).rejects.toMatchObject({
      code: 'RUN_TIMEOUT',
      details: { timeoutMs: 50 },
    });
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('refuses the late result of work that blocks the event loop, once it returns', async () => {
    const started = performance.now();
    await expect(withTimeout(blocking(200), 50, 'a blocker')).rejects.toMatchObject({ code: 'RUN_TIMEOUT' });
    // Nothing can interrupt a blocked thread: the answer comes when the work ends.
    expect(performance.now() - started).toBeGreaterThanOrEqual(200);
  });

  it('passes results and failures of timely work through', async () => {
    const { value, durationMs } = await withTimeout(blocking(5), 1_000, 'quick');
    expect(value).toBe('done');
    expect(durationMs).toBeGreaterThanOrEqual(5);
    await expect(withTimeout(Promise.reject(new Error('boom')), 1_000, 'failing')).rejects.toThrow('boom');
  });
});
