/*
 * What one transaction can carry, and so what a provider may sign (audit C-1, L-2). A provider is
 * slashable unless it can publish, when challenged, a receipt's inputs and outputs
 * (`answerAvailability`) or a batch's receipt hashes (`answerBatch`) on chain, each in one
 * transaction. These are upper bounds of the gas those answers use, measured against anvil in
 * test/chain/challenges.test.ts: calldata costs at least 40 gas a byte under EIP-7623's floor, and
 * the data is also hashed and logged. A node takes half the block's gas limit as the most an answer
 * may need (room for a busy block), and refuses requests and batch sizes beyond it.
 */

/** Gas of `answerAvailability` beyond the data: the receipt, checks, the event, the bond refund. */
export const ANSWER_BASE_GAS = 150_000;
/** Gas per byte of inputs plus outputs (calldata floor, keccak, log data, memory). */
export const ANSWER_GAS_PER_BYTE = 48;
/** Gas of `answerBatch` beyond its receipts. */
export const BATCH_ANSWER_BASE_GAS = 120_000;
/** Gas per receipt hash of `answerBatch` (calldata, leaf hashing, the tree, the event). */
export const BATCH_ANSWER_GAS_PER_RECEIPT = 2_500;
/** EIP-7825's cap on one transaction's gas (2^24): a block limit above it does not help one answer. */
export const TX_GAS_CAP = 16_777_216;

/** The most gas one answer may need on a chain with this block gas limit: half of what a transaction gets. */
export function answerGasBudget(blockGasLimit: bigint | number): number {
  return Math.floor(Math.min(Number(blockGasLimit), TX_GAS_CAP) / 2);
}

/** An upper bound of the gas of answering an availability challenge with `dataBytes` of data. */
export function answerAvailabilityGas(dataBytes: number): number {
  return ANSWER_BASE_GAS + ANSWER_GAS_PER_BYTE * dataBytes;
}

/** An upper bound of the gas of answering a batch challenge for a batch of `receipts`. */
export function answerBatchGas(receipts: number): number {
  return BATCH_ANSWER_BASE_GAS + BATCH_ANSWER_GAS_PER_RECEIPT * receipts;
}

/**
 * The most inputs plus outputs (bytes of canonical encoding) a receipt may carry: the chain's
 * `maxDataBytes`, lowered to what an answer can publish within the gas budget of this chain.
 */
export function dataCap(params: { maxDataBytes: number; blockGasLimit: bigint | number }): number {
  const byGas = Math.floor((answerGasBudget(params.blockGasLimit) - ANSWER_BASE_GAS) / ANSWER_GAS_PER_BYTE);
  return Math.max(0, Math.min(params.maxDataBytes, byGas));
}

/** The most receipts a batch may hold so that its receipt list can be published within the budget. */
export function batchCap(blockGasLimit: bigint | number): number {
  const byGas = Math.floor(
    (answerGasBudget(blockGasLimit) - BATCH_ANSWER_BASE_GAS) / BATCH_ANSWER_GAS_PER_RECEIPT,
  );
  // and within geth's 128 KiB transaction size: 32 bytes a hash
  return Math.max(0, Math.min(byGas, 3_900));
}
