/**
 * Runs tasks one after another. Each transaction is alone in its account's lane already
 * (src/chain/client.ts `send`: one sender per account, so the batch committer and the voucher
 * redeemer never race for a nonce); the node also runs its multi-step chain actions through one of
 * these (read then write, approve then open a challenge), so no other task of the node lands
 * between their steps. `exclusive` in src/chain/client.ts does the same for any caller, per account.
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
