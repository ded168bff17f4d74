import type { Logger } from 'pino';
import type { NewAnswer, NodeDb } from './db.js';

/*
 * Group commit of receipts. An answer leaves only once its receipt is durable (committed: WAL,
 * synchronous=FULL), and each commit is an fsync on the event loop (better-sqlite3 is synchronous):
 * 0.3-2 ms on the 2-core bench machine, as long as a 1 ms model's run, paid by every request in
 * turn. Concurrent requests whose runs end in the same turn of the event loop (onnxruntime-node runs
 * each in its own setImmediate) bring their answers here one after the other; they are written
 * together on the next turn, in one transaction, and each `record` resolves only after that
 * transaction has committed. One fsync per group instead of one per answer, and still no answer
 * before its receipt is on disk. A request alone waits one turn of the event loop, not a timer.
 *
 * The vouchers that came with requests (src/node/payments.ts, `flush`) are written in the same
 * transaction: before the answers leave, at no fsync of their own.
 */

export type GroupCommit = {
  /**
   * Resolves once `answer` is committed with its group; rejects with the error that kept it out
   * (SQLITE_CONSTRAINT_UNIQUE when its request id was answered meanwhile), or the commit's own.
   */
  record(answer: NewAnswer): Promise<void>;
};

export type GroupCommitParameters = {
  readonly db: NodeDb;
  /** Runs inside each group's transaction (the vouchers received with requests); its failure is logged, not the group's. */
  readonly alongside?: () => void;
  readonly log: Logger;
};

type Waiting = {
  readonly answer: NewAnswer;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
};

export function createGroupCommit({ db, alongside, log }: GroupCommitParameters): GroupCommit {
  let group: Waiting[] = [];

  const writeAlongside = () => {
    try {
      alongside?.();
    } catch (error) {
      log.error({ err: error }, 'could not write the vouchers received with requests');
    }
  };

  function commit(): void {
    const committing = group;
    group = [];
    let errors: (Error | undefined)[];
    try {
      errors = db.recordAnswers(
        committing.map((w) => w.answer),
        writeAlongside,
      );
    } catch (error) {
      for (const w of committing) w.reject(error);
      return;
    }
    committing.forEach((w, i) => {
      const error = errors[i];
      if (error) w.reject(error);
      else w.resolve();
    });
  }

  return {
    record: (answer) =>
      new Promise<void>((resolve, reject) => {
        group.push({ answer, resolve, reject });
        if (group.length === 1) setImmediate(commit);
      }),
  };
}
