import type { Address, Hex } from 'viem';
import type { Receipt } from '../protocol/receipt.js';
import { eventsOf, secondsToMs, type GlassboxClient, type TxResult } from './client.js';
import { ABIS, readFrom, sendTo } from './contracts.js';

export type CommitBatchParameters = {
  /** The batch's Merkle root (`batchTree(receiptHashes).root`). */
  readonly root: Hex;
  /** How many receipts it holds. */
  readonly count: number;
  /** Where the receipts and their inputs are served during the challenge window. */
  readonly uri: string;
};

/** Commits a batch root; returns its id (from the BatchCommitted event). */
export async function commitBatch(
  client: GlassboxClient,
  params: CommitBatchParameters,
): Promise<TxResult & { batchId: bigint }> {
  const tx = await sendTo(client, 'receiptLedger', 'commitBatch', [params.root, params.count, params.uri]);
  const [event] = eventsOf(ABIS.receiptLedger, 'BatchCommitted', tx.receipt.logs);
  return { ...tx, batchId: event!.batchId };
}

export type BatchInfo = {
  readonly batchId: bigint;
  readonly provider: Address;
  readonly root: Hex;
  readonly count: number;
  readonly committedAtMs: number;
};

export async function getBatch(client: GlassboxClient, batchId: bigint): Promise<BatchInfo> {
  const b = await readFrom(client, 'receiptLedger', 'getBatch', [batchId]);
  return {
    batchId,
    provider: b.provider,
    root: b.root,
    count: Number(b.count),
    committedAtMs: secondsToMs(b.committedAt),
  };
}

export function getBatchCount(client: GlassboxClient): Promise<bigint> {
  return readFrom(client, 'receiptLedger', 'batchCount');
}

/** Whether the receipt with struct hash `receiptHash` is in batch `batchId` (checked on chain). */
export function verifyInclusion(
  client: GlassboxClient,
  params: { batchId: bigint; receiptHash: Hex; proof: readonly Hex[] },
): Promise<boolean> {
  return readFrom(client, 'receiptLedger', 'verifyInclusion', [
    params.batchId,
    params.receiptHash,
    params.proof,
  ]);
}

/** Whether `receipt` is in batch `batchId` and that batch was committed by its provider. */
export function isCommitted(
  client: GlassboxClient,
  params: { batchId: bigint; receipt: Receipt; proof: readonly Hex[] },
): Promise<boolean> {
  return readFrom(client, 'receiptLedger', 'isCommitted', [params.batchId, params.receipt, params.proof]);
}

/** The receipt's EIP-712 struct hash as the contract computes it. */
export function hashReceiptOnChain(client: GlassboxClient, receipt: Receipt): Promise<Hex> {
  return readFrom(client, 'receiptLedger', 'hashReceipt', [receipt]);
}

/** The address that signed `receipt` as the contract recovers it (zero for a malformed signature). */
export function recoverReceiptSignerOnChain(
  client: GlassboxClient,
  params: { receipt: Receipt; signature: Hex },
): Promise<Address> {
  return readFrom(client, 'receiptLedger', 'recoverSigner', [params.receipt, params.signature]);
}
