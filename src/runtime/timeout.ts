import { GlassboxError } from '../protocol/errors.js';

/**
 * Runs `work` under a time limit and refuses a result that comes too late (RUN_TIMEOUT).
 *
 * Two mechanisms, because engines differ in how they block:
 * - a timer raced against the work, for engines whose runs yield to the event loop (a wasm worker,
 *   a token-by-token generation loop): the caller gets RUN_TIMEOUT when the limit passes;
 * - the elapsed time checked when the work settles, for engines whose runs block the event loop.
 *   onnxruntime-node is one: its `run` calls the native session synchronously inside a
 *   `setImmediate`, so no timer can fire while it computes, and its result is delivered (as a
 *   microtask) before any expired timer gets its turn. The race alone would never win there.
 *
 * Neither stops the computation: onnxruntime-node gives no handle on a native run in progress (run
 * options are fixed when the run starts, and the one JS thread that could act is the one the run
 * blocks), so a run past its limit still occupies a CPU until it ends; its result is only never
 * reported. A server that must bound CPU time,
 * not just answer time, runs its engines in another process it can kill.
 */
export async function withTimeout<T>(
  work: Promise<T>,
  timeoutMs: number,
  what: string,
): Promise<{ value: T; durationMs: number }> {
  const started = performance.now();
  const late = (durationMs: number) =>
    new GlassboxError(
      'RUN_TIMEOUT',
      `${what} ran ${durationMs.toFixed(1)} ms, longer than the limit of ${timeoutMs} ms`,
      { details: { durationMs, timeoutMs } },
    );
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late(performance.now() - started)), timeoutMs);
  });
  try {
    const value = await Promise.race([work, expired]);
    const durationMs = performance.now() - started;
    if (durationMs > timeoutMs) throw late(durationMs);
    return { value, durationMs };
  } finally {
    clearTimeout(timer);
    // A run that lost the race may still fail later; that failure has no one left to tell.
    work.catch(() => undefined);
  }
}
