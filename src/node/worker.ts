/*
 * The one shape of the node's background work (the batch committer, the voucher redeemer, the
 * roles): a pass of `work` every `intervalMs`, never two at once. Modelled on libp2p's services:
 * each is a `Startable`, composed by createNode and stopped in reverse.
 */

/** What a node service is to the node: something to start and to stop (libp2p's `Startable`). */
export type Startable = {
  start(): void | Promise<void>;
  /** Resolves once the service's work in flight has finished. */
  stop(): Promise<void>;
};

export type WorkerParameters<T> = {
  /** Time between passes, ms; 0 runs passes only when asked (`run`). */
  readonly intervalMs: number;
  /** One pass. */
  readonly work: () => Promise<T>;
  /** What a timed pass that fails is reported to (a pass asked for by `run` rejects to its caller). */
  readonly onError: (error: unknown) => void;
};

export type Worker<T> = Startable & {
  /**
   * A pass that begins after this call: now when none is running, else right after the one in
   * flight (every call made meanwhile shares it), so whatever was there to do when it was asked is
   * done when it resolves.
   */
  run(): Promise<T>;
};

export function createWorker<T>(params: WorkerParameters<T>): Worker<T> {
  if (!Number.isFinite(params.intervalMs) || params.intervalMs < 0)
    throw new RangeError(`intervalMs must be a number of ms, at least 0, not ${params.intervalMs}`);
  let running: Promise<T> | undefined;
  let queued: Promise<T> | undefined;
  let timer: NodeJS.Timeout | undefined;

  function begin(): Promise<T> {
    const pass = params.work().finally(() => {
      if (running === pass) running = undefined;
    });
    running = pass;
    return pass;
  }

  function run(): Promise<T> {
    if (!running) return begin();
    // one follow-up pass for every call made while a pass runs
    queued ??= running
      .catch(() => undefined)
      .then(() => {
        queued = undefined;
        return begin();
      });
    return queued;
  }

  return {
    run,
    start() {
      if (timer || params.intervalMs === 0) return;
      timer = setInterval(() => {
        // single flight: a tick that finds a pass running skips
        if (!running) begin().catch(params.onError);
      }, params.intervalMs);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      timer = undefined;
      for (let pass = queued ?? running; pass; pass = queued ?? running) await pass.catch(() => undefined);
    },
  };
}
