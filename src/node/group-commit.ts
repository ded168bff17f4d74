import type { SignedVoucher } from '../protocol/voucher.js';
import type { NewAnswer, NodeDb } from './db.js';

/*
 * Group commit of receipts. An answer leaves only once its receipt is durable, and making it
 * durable is an fsync: 0.3-2 ms on the 2-core bench machine, as long as a 1 ms model's run. Done
 * inside each commit (synchronous=FULL) it stopped the event loop for every request in turn.
 *
 * Now each answer is committed at once without a sync (`NodeDb.recordAnswer`), and made durable by
 * an fdatasync of the WAL on libuv's thread pool (`NodeDb.syncAnswers`) while the event loop goes
 * on with other requests. One sync runs at a time; every answer committed while it runs waits for
 * the next, which covers them all: concurrent requests share fsyncs instead of queueing one each.
 * `record` resolves only after a sync that began after its commit: no answer leaves before its
 * receipt is on disk. A request alone waits for one fsync, as before.
 *
 * The vouchers that came with requests (src/node/payments.ts) are written in the answers'
 * transactions.
 */

export type GroupCommit = {
  /**
   * Resolves once `answer` is committed and on disk; rejects with the error that kept it out
   * (SQLITE_CONSTRAINT_UNIQUE when its request id was answered meanwhile), or the sync's.
   */
  record(answer: NewAnswer): Promise<void>;
};

export type GroupCommitParameters = {
  readonly db: NodeDb;
  /** Hands over the vouchers to write with an answer (those accepted with requests, not yet written). */
  readonly vouchers?: () => readonly SignedVoucher[];
};

type Waiting = { readonly resolve: () => void; readonly reject: (error: unknown) => void };

export function createGroupCommit({ db, vouchers }: GroupCommitParameters): GroupCommit {
  /** Committed, not yet covered by a sync that began after the commit. */
  let unsynced: Waiting[] = [];
  let syncing = false;

  async function sync(): Promise<void> {
    syncing = true;
    while (unsynced.length > 0) {
      const covered = unsynced;
      unsynced = [];
      try {
        await db.syncAnswers();
        for (const w of covered) w.resolve();
      } catch (error) {
        for (const w of covered) w.reject(error);
      }
    }
    syncing = false;
  }

  const durable = () =>
    new Promise<void>((resolve, reject) => {
      unsynced.push({ resolve, reject });
      if (!syncing) void sync();
    });

  return {
    async record(answer) {
      db.recordAnswer(answer, vouchers?.() ?? []);
      await durable();
    },
  };
}
