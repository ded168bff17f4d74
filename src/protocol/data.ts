import { bytesToHex, hexToBytes, type Hex } from 'viem';
import { GlassboxError } from './errors.js';
import { keccak256Bytes, keccak256Chunks } from './keccak.js';
import { chunkTree, verifyChunkProof } from './merkle.js';

/*
 * Data commitments: the inputHash and outputHash of receipts (and trace steps), over canonical
 * encodings (docs/protocol.md, "Data commitments"). A provider challenged for availability must
 * publish a receipt's data on chain, and one transaction carries at most about 128 KiB, so large
 * data is committed to in chunks that can be published and checked one transaction each:
 *
 * - data of at most CHUNK_BYTES is hashed whole: keccak256(data), as receipts always were;
 * - longer data is cut into CHUNK_BYTES chunks (the last may be shorter), leaf i of a Merkle tree
 *   is keccak256(abi.encodePacked(uint32 i, keccak256(chunk i))) (`chunkTree`), and the hash is
 *   keccak256(abi.encodePacked("glassbox.chunks.v1", uint64 length, root)).
 *
 * That preimage is itself 58 bytes of data, which hashed whole would give the same hash and open a
 * large commitment with 58 bytes of nothing. So a datum of exactly that shape (a "chunks header")
 * is never hashed whole: it is committed to in chunks too, as one chunk. Then every hash has one
 * opening, and DisputeManager accepts exactly the data whose dataHash a receipt names.
 */

/** The chunk size: one chunk's answer (about 2.7M gas, 66 KiB) fits a transaction anywhere. */
export const CHUNK_BYTES = 64 * 1024;
/** The most chunks of one datum: one 256-bit word of DisputeManager records which were published. */
export const MAX_CHUNKS = 256;
/** The most bytes a datum may have and still be published: 16 MiB. */
export const MAX_CHUNKED_BYTES = CHUNK_BYTES * MAX_CHUNKS;
/** The tag that starts a chunked commitment's preimage. */
export const CHUNKS_TAG = 'glassbox.chunks.v1';

const TAG = new TextEncoder().encode(CHUNKS_TAG);
/** tag | uint64 length | bytes32 root */
const HEADER_BYTES = TAG.length + 8 + 32;
export const ZERO_ROOT: Hex = `0x${'00'.repeat(32)}`;

/** The data commitment of `data` (see above). */
export function dataHash(data: Uint8Array): Hex {
  return dataHashStream((update) => update(data));
}

/** `dataHash` of what `feed` writes, without concatenating it: memory stays one hash per chunk. */
export function dataHashStream(feed: (update: (part: Uint8Array) => void) => void): Hex {
  const { hashes, length, head } = keccak256Chunks(feed, CHUNK_BYTES, HEADER_BYTES);
  if (hashes.length === 1 && !isChunksHeader(head)) return bytesToHex(hashes[0]!);
  return chunksCommitment(length, chunkTree(hashes).root);
}

/** Whether `data` has the shape of a chunked commitment's preimage (so it is never hashed whole). */
export function isChunksHeader(data: Uint8Array): boolean {
  return data.length === HEADER_BYTES && TAG.every((b, i) => data[i] === b);
}

/** keccak256(abi.encodePacked(CHUNKS_TAG, uint64 length, root)). */
export function chunksCommitment(length: number, root: Hex): Hex {
  const header = new Uint8Array(HEADER_BYTES);
  header.set(TAG);
  new DataView(header.buffer).setBigUint64(TAG.length, BigInt(length)); // big-endian, as abi.encodePacked
  header.set(hexToBytes(root), TAG.length + 8);
  return bytesToHex(keccak256Bytes(header));
}

/** How many chunks a datum of `length` bytes has when committed to in chunks (at least one). */
export function chunkCount(length: number): number {
  return Math.max(1, Math.ceil(length / CHUNK_BYTES));
}

/**
 * One chunk as DisputeManager's `answerAvailabilityChunk` takes it: the datum's `length` and
 * `root` (ZERO_ROOT for a datum hashed whole, which is its own chunk 0), the chunk's index, bytes
 * and Merkle proof.
 */
export type DataChunk = {
  readonly length: number;
  readonly root: Hex;
  readonly index: number;
  readonly data: Uint8Array;
  readonly proof: readonly Hex[];
};

/** A datum cut for publishing: its hash, how it is committed to, and each chunk with its proof. */
export type ChunkedData = {
  readonly hash: Hex;
  readonly length: number;
  /** ZERO_ROOT when the datum is hashed whole (then it is one chunk, published as it is). */
  readonly root: Hex;
  readonly count: number;
  chunk(index: number): DataChunk;
};

export function chunkData(data: Uint8Array): ChunkedData {
  const count = chunkCount(data.length);
  const slice = (index: number) => data.subarray(index * CHUNK_BYTES, (index + 1) * CHUNK_BYTES);
  const checkIndex = (index: number) => {
    if (!Number.isInteger(index) || index < 0 || index >= count)
      throw new GlassboxError('MERKLE_INVALID', `chunk ${index} is outside the ${count} chunks of this data`);
  };
  if (count === 1 && !isChunksHeader(data)) {
    const hash = bytesToHex(keccak256Bytes(data));
    return {
      hash,
      length: data.length,
      root: ZERO_ROOT,
      count,
      chunk: (index) => {
        checkIndex(index);
        return { length: data.length, root: ZERO_ROOT, index, data, proof: [] };
      },
    };
  }
  const tree = chunkTree(Array.from({ length: count }, (_, i) => keccak256Bytes(slice(i))));
  return {
    hash: chunksCommitment(data.length, tree.root),
    length: data.length,
    root: tree.root,
    count,
    chunk: (index) => {
      checkIndex(index);
      return { length: data.length, root: tree.root, index, data: slice(index), proof: tree.proof(index) };
    },
  };
}

/**
 * Whether `chunk` is chunk `chunk.index` of the datum whose dataHash is `hash`: what
 * DisputeManager's `answerAvailabilityChunk` checks, so that a datum opens only at its own
 * positions, with its own length, to its own bytes.
 */
export function verifyChunk(hash: Hex, chunk: DataChunk): boolean {
  const { length, root, index, data, proof } = chunk;
  if (!Number.isSafeInteger(length) || length < 0 || !Number.isInteger(index) || index < 0) return false;
  if (root.toLowerCase() === ZERO_ROOT)
    return (
      index === 0 &&
      length === data.length &&
      length <= CHUNK_BYTES &&
      !isChunksHeader(data) &&
      bytesToHex(keccak256Bytes(data)) === hash.toLowerCase()
    );
  const count = chunkCount(length);
  if (count > MAX_CHUNKS || index >= count) return false;
  // hashed in chunks when longer than one chunk, or when a chunks header: nothing else
  if (count === 1 && !isChunksHeader(data)) return false;
  if (data.length !== chunkLength(length, index)) return false;
  if (chunksCommitment(length, root) !== hash.toLowerCase()) return false;
  return verifyChunkProof(root, index, keccak256Bytes(data), proof);
}

/** The size of chunk `index` of a datum of `length` bytes: CHUNK_BYTES but for the last one. */
export function chunkLength(length: number, index: number): number {
  return Math.min(CHUNK_BYTES, length - index * CHUNK_BYTES);
}

/**
 * The datum rebuilt from its chunks (in any order), checked against `hash`: DATA_INVALID naming
 * what is wrong when a chunk is missing, repeated or the whole does not hash to `hash`.
 */
export function joinChunks(hash: Hex, chunks: readonly { index: number; data: Uint8Array }[]): Uint8Array {
  const bad = (message: string) => new GlassboxError('DATA_INVALID', message, { details: { hash } });
  const byIndex = [...chunks].sort((a, b) => a.index - b.index);
  if (byIndex.length === 0) throw bad(`chunk 0 of ${hash} is missing`);
  byIndex.forEach((c, i) => {
    if (c.index !== i) throw bad(`chunk ${i} of ${hash} is ${c.index < i ? 'repeated' : 'missing'}`);
  });
  const data = new Uint8Array(byIndex.reduce((n, c) => n + c.data.length, 0));
  let at = 0;
  for (const c of byIndex) {
    data.set(c.data, at);
    at += c.data.length;
  }
  if (dataHash(data) !== hash.toLowerCase())
    throw bad(`the ${byIndex.length} chunks published for ${hash} rebuild data of another hash`);
  return data;
}
