import { CHUNK_BYTES, MAX_CHUNKED_BYTES } from './data.js';
import { DTYPE_BYTES, type DType } from './tensor.js';

/*
 * What a provider may sign, so that it can always answer (audit C-1, L-2). A provider is slashable
 * unless it can publish, when challenged, a receipt's inputs and outputs, or a batch's receipt
 * hashes, on chain. Data of at most one chunk a side goes in one `answerAvailability`; larger data
 * goes chunk by chunk (`answerAvailabilityChunk`, one 64 KiB chunk a transaction, src/protocol/
 * data.ts), so what a receipt may carry is bounded by the chain's `maxDataBytes` (at most
 * MAX_CHUNKS chunks a side), not by one transaction. What must fit one transaction is each answer:
 * these are upper bounds of their gas, measured against anvil in test/chain/challenges.test.ts
 * (calldata costs at least 40 gas a byte under EIP-7623's floor, and the data is also hashed and
 * logged). A node takes half of what one transaction may use as the most an answer may need (room
 * for a busy block), and refuses requests and batch sizes beyond it.
 */

/** Gas of `answerAvailability` beyond the data: the receipt, checks, the event, the bond refund. */
export const ANSWER_BASE_GAS = 150_000;
/** Gas per byte of inputs plus outputs (calldata floor, keccak, log data, memory). */
export const ANSWER_GAS_PER_BYTE = 48;
/**
 * Gas of one `answerAvailabilityChunk` beyond the chunk's bytes: the receipt and its hash, the
 * commitment, a Merkle proof of MAX_CHUNKS leaves, the bitmap, the event and, for the last chunk,
 * the bond refund.
 */
export const CHUNK_ANSWER_BASE_GAS = 200_000;
/** Gas of `answerBatch` beyond its receipts. */
export const BATCH_ANSWER_BASE_GAS = 120_000;
/** Gas per receipt hash of `answerBatch` (calldata, leaf hashing, the tree, the event). */
export const BATCH_ANSWER_GAS_PER_RECEIPT = 2_500;
/** EIP-7825's cap on one transaction's gas (2^24): a block limit above it does not help one answer. */
export const TX_GAS_CAP = 16_777_216;
/**
 * The most a chain's `maxDataBytes` may be: what DisputeManager can take chunk by chunk (a side
 * may be all of it).
 */
export const MAX_DATA_BYTES = MAX_CHUNKED_BYTES;

/** The most gas one answer may need on a chain with this block gas limit: half of what a transaction gets. */
export function answerGasBudget(blockGasLimit: bigint | number): number {
  return Math.floor(Math.min(Number(blockGasLimit), TX_GAS_CAP) / 2);
}

/** An upper bound of the gas of answering an availability challenge at once with `dataBytes` of data. */
export function answerAvailabilityGas(dataBytes: number): number {
  return ANSWER_BASE_GAS + ANSWER_GAS_PER_BYTE * dataBytes;
}

/** An upper bound of the gas of publishing one chunk of `chunkBytes` (the largest by default). */
export function answerChunkGas(chunkBytes = CHUNK_BYTES): number {
  return CHUNK_ANSWER_BASE_GAS + ANSWER_GAS_PER_BYTE * chunkBytes;
}

/** An upper bound of the gas of answering a batch challenge for a batch of `receipts`. */
export function answerBatchGas(receipts: number): number {
  return BATCH_ANSWER_BASE_GAS + BATCH_ANSWER_GAS_PER_RECEIPT * receipts;
}

/**
 * The most inputs plus outputs (bytes of canonical encoding) a receipt may carry: the chain's
 * `maxDataBytes` where a chunk's answer fits the gas budget of this chain. Where not even that
 * fits, only what one `answerAvailability` can publish within the budget (a chunk at most a side).
 */
export function dataCap(params: { maxDataBytes: number; blockGasLimit: bigint | number }): number {
  const budget = answerGasBudget(params.blockGasLimit);
  if (answerChunkGas() <= budget) return Math.min(params.maxDataBytes, MAX_DATA_BYTES);
  const byGas = Math.floor((budget - ANSWER_BASE_GAS) / ANSWER_GAS_PER_BYTE);
  return Math.max(0, Math.min(params.maxDataBytes, byGas, CHUNK_BYTES));
}

/** The most receipts a batch may hold so that its receipt list can be published within the budget. */
export function batchCap(blockGasLimit: bigint | number): number {
  const byGas = Math.floor(
    (answerGasBudget(blockGasLimit) - BATCH_ANSWER_BASE_GAS) / BATCH_ANSWER_GAS_PER_RECEIPT,
  );
  // and within geth's 128 KiB transaction size: 32 bytes a hash
  return Math.max(0, Math.min(byGas, 3_900));
}

/**
 * A data cap in values, for messages: `bytes` as a count of elements when every tensor it is
 * shared by has one fixed-width dtype (a million float32 values, not 4 MiB); undefined otherwise
 * (mixed or string dtypes have no one answer). Names, dims and headers take a few bytes more.
 */
export function capInValues(
  bytes: number,
  dtypes: readonly DType[],
): { readonly values: number; readonly dtype: Exclude<DType, 'string'> } | undefined {
  const [dtype] = dtypes;
  if (dtype === undefined || dtype === 'string' || dtypes.some((d) => d !== dtype)) return undefined;
  return { values: Math.floor(bytes / DTYPE_BYTES[dtype]), dtype };
}
