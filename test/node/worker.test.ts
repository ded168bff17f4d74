import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { createWorker } from '../../src/node/worker.js';

/*
 * The one loop shape of the node's background work (batcher, redeemer, roles): real timers, a
 * pass that takes longer than the interval, and the guarantees the services rely on.
 */

/** A pass that records when it ran, takes `ms`, and tracks how many run at once. */
function slowWork(ms: number) {
  const state = { passes: 0, running: 0, mostAtOnce: 0, starts: [] as number[] };
  const work = async () => {
    state.passes++;
    state.starts.push(Date.now());
    state.running++;
    state.mostAtOnce = Math.max(state.mostAtOnce, state.running);
    await sleep(ms);
    state.running--;
    return state.passes;
  };
  return { state, work };
}

describe('createWorker', () => {
  it('runs passes on its interval, never two at once, and stop waits for the one in flight', async () => {
    const { state, work } = slowWork(40);
    const worker = createWorker({ intervalMs: 10, work, onError: () => undefined });
    worker.start();
    await sleep(200);
    await worker.stop();
    expect(state.passes).toBeGreaterThanOrEqual(2);
    expect(state.mostAtOnce).toBe(1);
    expect(state.running).toBe(0); // stop returned after the pass in flight finished
    const after = state.passes;
    await sleep(60);
    expect(state.passes).toBe(after); // no pass after stop
  });

  it('run() during a pass gets one follow-up pass that starts after the call, shared by every call meanwhile', async () => {
    const { state, work } = slowWork(30);
    const worker = createWorker({ intervalMs: 0, work, onError: () => undefined });
    const first = worker.run();
    await sleep(5);
    const askedAt = Date.now();
    const [a, b] = [worker.run(), worker.run()];
    expect(a).toBe(b);
    expect(await first).toBe(1);
    expect(await a).toBe(2);
    expect(state.starts[1]).toBeGreaterThanOrEqual(askedAt);
    expect(state.mostAtOnce).toBe(1);
    await worker.stop();
  });

  it('with intervalMs 0 runs only when asked', async () => {
    const { state, work } = slowWork(1);
    const worker = createWorker({ intervalMs: 0, work, onError: () => undefined });
    worker.start();
    await sleep(50);
    expect(state.passes).toBe(0);
    await worker.run();
    expect(state.passes).toBe(1);
    await worker.stop();
  });

  it('a timed pass that fails goes to onError and the next one runs; a pass asked for rejects to its caller', async () => {
    const errors: unknown[] = [];
    let calls = 0;
    const worker = createWorker({
      intervalMs: 10,
      work: async () => {
        calls++;
        throw new Error(`pass ${calls} failed`);
      },
      onError: (error) => errors.push(error),
    });
    worker.start();
    await sleep(60);
    await worker.stop();
    expect(errors.length).toBeGreaterThanOrEqual(2);
    await expect(worker.run()).rejects.toThrow(/failed/);
  });

  it('refuses an interval that is not a number of ms, naming it', () => {
    const work = async () => undefined;
    expect(() => createWorker({ intervalMs: -1, work, onError: () => undefined })).toThrow(/intervalMs/);
    expect(() => createWorker({ intervalMs: Number.NaN, work, onError: () => undefined })).toThrow(
      /intervalMs/,
    );
  });
});
