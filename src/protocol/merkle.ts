import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import type { Hex } from 'viem';
import { GlassboxError } from './errors.js';

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

export function verifyTraceProof(root: Hex, index: number, tensorHash: Hex, proof: readonly Hex[]): boolean {
  return verify(root, TRACE_TYPES, [BigInt(index), tensorHash], proof);
}
