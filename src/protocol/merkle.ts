import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { bytesToHex, hexToBytes, type Hex } from 'viem';
import { GlassboxError } from './errors.js';
import { keccak256Bytes } from './keccak.js';

/*
 * Merkle trees in OpenZeppelin's standard form (@openzeppelin/merkle-tree), so that Solidity's
 * MerkleProof.verify checks our proofs: a leaf is keccak256(bytes.concat(keccak256(abi.encode(
 * values)))) and pairs hash sorted. Because pair hashing is commutative, a proof does not bind a
 * leaf's position; trees whose order matters put the index into the leaf.
 */

export type MerkleTree = {
  readonly root: Hex;
  readonly size: number;
  /** The sibling hashes that prove leaf `index`. */
  proof(index: number): Hex[];
};

function build<V extends unknown[]>(values: V[], types: string[], what: string): MerkleTree {
  if (values.length === 0)
    throw new GlassboxError('MERKLE_INVALID', `a ${what} tree needs at least one leaf`);
  const tree = StandardMerkleTree.of(values, types, { sortLeaves: false });
  return {
    root: tree.root as Hex,
    size: values.length,
    proof: (index) => {
      if (!Number.isInteger(index) || index < 0 || index >= values.length)
        throw new GlassboxError(
          'MERKLE_INVALID',
          `leaf ${index} is outside the ${what} tree of ${values.length}`,
        );
      return tree.getProof(index) as Hex[];
    },
  };
}

function verify(root: Hex, types: string[], value: unknown[], proof: readonly Hex[]): boolean {
  try {
    return StandardMerkleTree.verify(root, types, value, [...proof]);
  } catch {
    return false; // a malformed root, value or proof proves nothing
  }
}

const BATCH_TYPES = ['bytes32'];

/**
 * A batch of receipts, over their EIP-712 struct hashes. The receipt is its own content, so the
 * order in the batch carries no meaning; ReceiptLedger verifies the same leaf.
 */
export function batchTree(receiptHashes: readonly Hex[]): MerkleTree {
  return build(
    receiptHashes.map((h) => [h]),
    BATCH_TYPES,
    'batch',
  );
}

export function verifyBatchProof(root: Hex, receiptHash: Hex, proof: readonly Hex[]): boolean {
  return verify(root, BATCH_TYPES, [receiptHash], proof);
}

/** The leaf a contract computes for a receipt struct hash (for Solidity tests and debugging). */
export function batchLeaf(receiptHash: Hex): Hex {
  return StandardMerkleTree.of([[receiptHash]], BATCH_TYPES).leafHash([receiptHash]) as Hex;
}

const TRACE_TYPES = ['uint256', 'bytes32'];

/** An execution trace: leaf i is (i, hash of the i-th intermediate tensor in graph order). */
export function traceTree(tensorHashes: readonly Hex[]): MerkleTree {
  return build(
    tensorHashes.map((h, i) => [BigInt(i), h]),
    TRACE_TYPES,
    'trace',
  );
}

/**
 * The root of `traceTree(tensorHashes)`, computed on raw bytes with the WebAssembly keccak: a trace
 * has a leaf per intermediate tensor (thousands for a real model), and building the whole
 * OpenZeppelin tree for its root took most of a traced run's time. Same layout: leaves in reverse
 * at the end of a heap array, pairs hashed sorted. Proofs still come from `traceTree`.
 */
export function traceRoot(tensorHashes: readonly Hex[]): Hex {
  const n = tensorHashes.length;
  if (n === 0) throw new GlassboxError('MERKLE_INVALID', 'a trace tree needs at least one leaf');
  const tree = new Array<Uint8Array>(2 * n - 1);
  const encoded = new Uint8Array(64); // abi.encode(uint256 index, bytes32 hash)
  const view = new DataView(encoded.buffer);
  tensorHashes.forEach((hash, i) => {
    view.setUint32(28, i);
    encoded.set(hexToBytes(hash), 32);
    tree[tree.length - 1 - i] = keccak256Bytes(keccak256Bytes(encoded));
  });
  for (let i = tree.length - 1 - n; i >= 0; i--) {
    const a = tree[2 * i + 1]!;
    const b = tree[2 * i + 2]!;
    tree[i] = compareBytes(a, b) <= 0 ? keccak256Bytes(a, b) : keccak256Bytes(b, a);
  }
  return bytesToHex(tree[0]!);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

export function verifyTraceProof(root: Hex, index: number, tensorHash: Hex, proof: readonly Hex[]): boolean {
  return verify(root, TRACE_TYPES, [BigInt(index), tensorHash], proof);
}
