import type { Hex } from 'viem';
import {
  answerAvailability,
  answerAvailabilityChunk,
  answerBatch,
  getBatch,
  getChallenge,
  getPublishedChunks,
  isChunkPublished,
  isContractRevert,
  type DataSide,
} from '../../chain/index.js';
import { chunkData, ZERO_ROOT } from '../../protocol/data.js';
import { isGlassboxError } from '../../protocol/errors.js';
import { signedReceiptFromJson, type Receipt } from '../../protocol/receipt.js';
import type { NodeDb } from '../db.js';
import type { Startable } from '../worker.js';
import { drawWhenDue } from './challenges.js';
import { addressOf, eachGuarded, roleWorker, type RoleComponents } from './components.js';

/*
 * The provider's availability answerer: it answers the availability challenges against this
 * provider by publishing on chain what was asked (a batch's receipt hashes; a receipt and its
 * inputs and outputs, at once or chunk by chunk when larger than a chunk), and draws the committees
 * of challenges against it: a challenger that doesn't like the draw block's hash could otherwise
 * wait for it to expire (256 blocks) and get another.
 */

/** Where the answerer finds what it publishes: the provider's own receipts (a test may wrap it). */
export type AvailabilityData = {
  /** The receipt struct hashes of this provider's batch with `root`, in batch order; undefined when it has none. */
  batchLeaves(root: Hex): readonly Hex[] | undefined;
  /** A receipt of this provider and its data; undefined when it has none (never its, or pruned). */
  receiptData(receiptHash: Hex): { receipt: Receipt; inputs: Uint8Array; outputs: Uint8Array } | undefined;
};

/** The answerer's data from the node's receipt database. */
export function availabilityDataOf(db: Pick<NodeDb, 'batchLeaves' | 'getReceiptByHash'>): AvailabilityData {
  return {
    batchLeaves(root) {
      const leaves = db.batchLeaves(root);
      return leaves.length > 0 ? leaves : undefined;
    },
    receiptData(receiptHash) {
      const row = db.getReceiptByHash(receiptHash);
      if (!row?.inputs || !row.outputs) return undefined;
      return {
        receipt: signedReceiptFromJson(row.receipt).receipt,
        inputs: row.inputs,
        outputs: row.outputs,
      };
    },
  };
}

export type AvailabilityInit = { readonly pollIntervalMs: number };

export type AvailabilityComponents = RoleComponents & { readonly data: AvailabilityData };

export type AvailabilityAnswerer = Startable & {
  /** One pass now (or right after the one in flight); a failure is logged, never thrown. */
  tick(): Promise<void>;
};

export const availabilityAnswerer =
  (init: AvailabilityInit) =>
  (c: AvailabilityComponents): AvailabilityAnswerer => {
    const { chain, serial, log, events, store, data } = c;
    const me = addressOf(chain);

    async function answerChallenges(): Promise<void> {
      await events.follow(
        'availability-batches',
        { contract: 'disputeManager', eventName: 'BatchChallenged', args: { provider: me } },
        async ({ events: challenged }) => {
          for (const { args } of challenged) {
            if ((await getChallenge(chain, args.id)).status !== 'open') continue;
            const { root } = await getBatch(chain, args.batchId);
            const receiptHashes = data.batchLeaves(root);
            if (!receiptHashes) {
              log.error({ challengeId: args.id.toString() }, 'batch challenge for a batch we do not have');
              continue;
            }
            await answer(args.id, 'batch', () =>
              answerBatch(chain, { challengeId: args.id, batchId: args.batchId, receiptHashes }),
            );
          }
        },
      );
      await events.follow(
        'availability',
        { contract: 'disputeManager', eventName: 'AvailabilityChallenged', args: { provider: me } },
        async ({ events: challenged }) => {
          for (const { args } of challenged) {
            if ((await getChallenge(chain, args.id)).status !== 'open') continue;
            const found = data.receiptData(args.receiptHash);
            if (!found) {
              log.error(
                { challengeId: args.id.toString() },
                'availability challenge for a receipt we do not have',
              );
              continue;
            }
            await answerData(args.id, found.receipt, found.inputs, found.outputs);
          }
        },
      );
    }

    /** Notes every challenge opened against us, then draws those due; a draw not yet possible stays noted. */
    async function drawAgainstUs(): Promise<void> {
      await events.follow(
        'opened-against-us',
        { contract: 'disputeManager', eventName: 'ChallengeOpened', args: { provider: me } },
        async ({ events: opened }) => {
          for (const { args } of opened) store.addDraw(args.id);
        },
      );
      await eachGuarded(
        log,
        store.draws(),
        (id) => ({ challengeId: id.toString() }),
        'drawing a committee failed; retrying',
        async (id) => {
          if (await drawWhenDue(c, await getChallenge(chain, id))) store.finishDraw(id);
        },
      );
    }

    /**
     * Publishes a challenged receipt's data: in one transaction when its inputs and outputs are
     * each hashed whole, else chunk by chunk (one transaction each, through the account's lane, so
     * other work of this node goes on between them), skipping chunks already on chain: a pass
     * stopped half way, by a restart or by someone else publishing too, carries on where the chain is.
     */
    async function answerData(id: bigint, receipt: Receipt, inputs: Uint8Array, outputs: Uint8Array) {
      const sides = { inputs: chunkData(inputs), outputs: chunkData(outputs) };
      if (sides.inputs.root === ZERO_ROOT && sides.outputs.root === ZERO_ROOT) {
        await answer(id, 'receipt', () =>
          answerAvailability(chain, { challengeId: id, receipt, inputs, outputs }),
        );
        return;
      }
      const published = await getPublishedChunks(chain, id);
      for (const side of ['inputs', 'outputs'] as const satisfies readonly DataSide[])
        for (let index = 0; index < sides[side].count; index++) {
          if (isChunkPublished(published[side], index)) continue;
          const chunk = sides[side].chunk(index);
          const sent = await answer(id, `${side} chunk ${index}`, () =>
            answerAvailabilityChunk(chain, { challengeId: id, receipt, side, chunk }),
          );
          if (!sent) return; // a revert (the answer period is over, the data no longer matches) ends it
        }
    }

    /**
     * Sends an answer (or one chunk of it); a revert (the data no longer rebuilds what was
     * committed, the period is over) is logged, not retried. True when it was sent.
     */
    async function answer(id: bigint, what: string, send: () => Promise<unknown>): Promise<boolean> {
      try {
        await serial(send);
        log.info({ challengeId: id.toString(), what }, 'availability answer sent on chain');
        return true;
      } catch (error) {
        if (!isGlassboxError(error, 'CHAIN_REVERTED')) throw error;
        // someone else published this chunk first: that it is on chain is all that counts
        if (isContractRevert(error, 'ChunkAlreadyPublished')) return true;
        log.error(
          { err: error, challengeId: id.toString(), what },
          'could not answer an availability challenge',
        );
        return false;
      }
    }

    const worker = roleWorker(log, 'provider', init.pollIntervalMs, async () => {
      await answerChallenges();
      await drawAgainstUs();
    });
    return { start: () => worker.start(), stop: () => worker.stop(), tick: () => worker.run() };
  };
