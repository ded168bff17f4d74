/**
 * Runs tasks one after another. The node sends every transaction of its staking account through
 * one of these, so that the batch committer and the voucher redeemer never race for a nonce.
 */
export type Serial = <T>(task: () => Promise<T>) => Promise<T>;

export function createSerial(): Serial {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>): Promise<T> => {
    const run = tail.then(task, task);
    tail = run.catch(() => undefined);
    return run;
  };
}
