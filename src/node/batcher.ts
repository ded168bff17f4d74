import type { Logger } from 'pino';
import type { Hex } from 'viem';
import { commitBatch, type GlassboxClient } from '../chain/index.js';
import { batchTree } from '../protocol/merkle.js';
import type { NodeDb } from './db.js';
import type { NodeMetrics } from './metrics.js';
import type { Serial } from './serial.js';
import { createWorker } from './worker.js';

/*
 * The batch committer (docs/protocol.md, Merkle trees): every `maxReceipts` receipts, or once the oldest open
 * receipt is `maxAgeMs` old, it builds the Merkle tree over their struct hashes (`batchTree`),
 * records the batch and each receipt's proof, then commits the root on chain with the URI where
 * the batch is served. The batch is recorded before the transaction, so a crash in between leaves a
 * pending batch that the next start commits (at worst the same root lands twice; never a receipt
 * without a batch).
 */

export type Batcher = {
  /** A receipt was persisted: commit soon if a batch is full. */
  notify(): void;
  /** Commits every open receipt (and any pending batch) now. */
  flush(): Promise<void>;
  /** Stops the timer and commits what is open. */
  stop(): Promise<void>;
};

export type BatcherParameters = {
  readonly db: NodeDb;
  readonly chain: GlassboxClient;
  readonly serial: Serial;
  /** Batch URIs are `<baseUrl>/v1/batches/<root>`. */
  readonly baseUrl: () => string;
  readonly maxReceipts: number;
  readonly maxAgeMs: number;
  readonly metrics: NodeMetrics;
  readonly log: Logger;
};

export function createBatcher(p: BatcherParameters): Batcher {
  let stopped = false;
  // Open receipts as last counted, plus those notified since: `notify` runs once per answer, and a
  // count query there cost 0.1-0.2 ms of each (CPU profile, docs/performance.md). Exact between
  // cuts: receipts leave the open set only through `cut`, which counts again.
  let open = p.db.countOpen();
  /** Set by `flush`: the next pass cuts every open receipt, full batch or not. */
  let forceNext = false;

  async function commitPending(): Promise<void> {
    for (const batch of p.db.pendingBatches()) {
      const tx = await p.serial(() =>
        commitBatch(p.chain, { root: batch.root, count: batch.count, uri: batch.uri }),
      );
      // the chain's time of the commit, which starts the challenge window (not our clock)
      const { timestamp } = await p.chain.publicClient.getBlock({ blockNumber: tx.blockNumber });
      p.db.markCommitted(batch.root, {
        batchId: tx.batchId,
        txHash: tx.hash,
        committedAt: Number(timestamp) * 1000,
      });
      p.metrics.batches.inc();
      p.metrics.batchedReceipts.inc(batch.count);
      p.log.info(
        { root: batch.root, batchId: tx.batchId.toString(), count: batch.count, tx: tx.hash },
        'batch committed',
      );
    }
  }

  function cut(force: boolean): boolean {
    open = p.db.countOpen();
    p.metrics.openReceipts.set(open);
    if (open === 0) return false;
    const oldest = p.db.oldestOpenAt() ?? Date.now();
    if (!force && open < p.maxReceipts && Date.now() - oldest < p.maxAgeMs) return false;
    const receipts = p.db.openReceipts(p.maxReceipts);
    const tree = batchTree(receipts.map((r) => r.leaf));
    const root = tree.root.toLowerCase() as Hex;
    p.db.createBatch({
      root,
      uri: `${p.baseUrl()}/v1/batches/${root}`,
      createdAt: Date.now(),
      leaves: receipts.map((r, i) => ({ seq: r.seq, proof: tree.proof(i) })),
    });
    open -= receipts.length;
    return true;
  }

  const worker = createWorker({
    intervalMs: Math.max(10, Math.min(1000, Math.floor(p.maxAgeMs / 4))),
    async work() {
      const force = forceNext;
      forceNext = false;
      await commitPending();
      while (cut(force)) await commitPending();
    },
    onError: (error) => p.log.error({ err: error }, 'batch commit failed; will retry'),
  });
  worker.start();

  return {
    notify() {
      if (stopped || ++open < p.maxReceipts) return;
      worker.run().catch((error: unknown) => p.log.error({ err: error }, 'batch commit failed; will retry'));
    },
    flush() {
      forceNext = true;
      return worker.run();
    },
    async stop() {
      stopped = true;
      await worker.stop();
      forceNext = true;
      await worker.run();
    },
  };
}
