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
      checkIndex(index, values.length, what);
      return tree.getProof(index) as Hex[];
    },
  };
}

function checkIndex(index: number, size: number, what: string): void {
  if (!Number.isInteger(index) || index < 0 || index >= size)
    throw new GlassboxError('MERKLE_INVALID', `leaf ${index} is outside the ${what} tree of ${size}`);
}

function verify(root: Hex, types: string[], value: unknown[], proof: readonly Hex[]): boolean {
  try {
    return StandardMerkleTree.verify(root, types, value, [...proof]);
  } catch {
    return false; // a malformed root, value or proof proves nothing
  }
}

const BATCH_TYPES = ['bytes32'];
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;

/**
 * A batch of receipts, over their EIP-712 struct hashes. The receipt is its own content, so the
 * order in the batch carries no meaning; ReceiptLedger verifies the same leaf. Built on raw bytes
 * with the WebAssembly keccak (`heapTree`): OpenZeppelin's library hashes in pure JS and re-checks
 * every proof it hands out, which cost the node about half a millisecond per receipt.
 */
export function batchTree(receiptHashes: readonly Hex[]): MerkleTree {
  return heapTree(receiptHashes.length, (i) => batchLeafBytes(receiptHashes[i]!), 'batch');
}

/** keccak256(keccak256(abi.encode(bytes32 receiptHash))): abi.encode of one bytes32 is its 32 bytes. */
function batchLeafBytes(receiptHash: Hex): Uint8Array {
  if (!BYTES32.test(receiptHash))
    throw new GlassboxError('MERKLE_INVALID', `a batch leaf must be a 32-byte hash, not ${receiptHash}`);
  return keccak256Bytes(keccak256Bytes(hexToBytes(receiptHash)));
}

export function verifyBatchProof(root: Hex, receiptHash: Hex, proof: readonly Hex[]): boolean {
  return verify(root, BATCH_TYPES, [receiptHash], proof);
}

/** The leaf a contract computes for a receipt struct hash (for Solidity tests and debugging). */
export function batchLeaf(receiptHash: Hex): Hex {
  return bytesToHex(batchLeafBytes(receiptHash));
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
 * OpenZeppelin tree for its root took most of a traced run's time. Proofs still come from
 * `traceTree`.
 */
export function traceRoot(tensorHashes: readonly Hex[]): Hex {
  const encoded = new Uint8Array(64); // abi.encode(uint256 index, bytes32 hash)
  const view = new DataView(encoded.buffer);
  return heapTree(
    tensorHashes.length,
    (i) => {
      view.setUint32(28, i);
      encoded.set(hexToBytes(tensorHashes[i]!), 32);
      return keccak256Bytes(keccak256Bytes(encoded));
    },
    'trace',
  ).root;
}

/**
 * The tree over a datum's chunks (src/protocol/data.ts): leaf i is keccak256(abi.encodePacked(
 * uint32 i, keccak256(chunk i))), 36 bytes hashed once (an inner node hashes 64, so no inner node
 * passes for a leaf), the index in it because sorted-pair hashing would not bind a position.
 * DisputeManager checks the same leaf with MerkleProof.
 */
export function chunkTree(chunkHashes: readonly Uint8Array[]): MerkleTree {
  return heapTree(chunkHashes.length, (i) => chunkLeaf(i, chunkHashes[i]!), 'chunk');
}

function chunkLeaf(index: number, chunkHash: Uint8Array): Uint8Array {
  const packed = new Uint8Array(36);
  new DataView(packed.buffer).setUint32(0, index); // abi.encodePacked(uint32): 4 bytes, big-endian
  packed.set(chunkHash, 4);
  return keccak256Bytes(packed);
}

/** Whether `proof` shows chunk `index`, whose keccak256 is `chunkHash`, under `root` (as MerkleProof.verify). */
export function verifyChunkProof(
  root: Hex,
  index: number,
  chunkHash: Uint8Array,
  proof: readonly Hex[],
): boolean {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff_ffff || chunkHash.length !== 32) return false;
  let node = chunkLeaf(index, chunkHash);
  for (const sibling of proof) {
    if (!BYTES32.test(sibling)) return false;
    const other = hexToBytes(sibling);
    node = compareBytes(node, other) <= 0 ? keccak256Bytes(node, other) : keccak256Bytes(other, node);
  }
  return bytesToHex(node) === root.toLowerCase();
}

/**
 * OpenZeppelin's tree (makeMerkleTree and getProof in @openzeppelin/merkle-tree) over `n` leaf
 * hashes, on raw bytes with the WebAssembly keccak: a heap array whose node i has children 2i + 1
 * and 2i + 2, the leaves in reverse at its end, each inner node the keccak of its two children
 * sorted. A proof is the sibling of each node from the leaf up to the root; nodes are converted to
 * hex once, when a proof first needs them.
 */
function heapTree(n: number, leaf: (index: number) => Uint8Array, what: string): MerkleTree {
  if (n === 0) throw new GlassboxError('MERKLE_INVALID', `a ${what} tree needs at least one leaf`);
  const tree = new Array<Uint8Array>(2 * n - 1);
  for (let i = 0; i < n; i++) tree[tree.length - 1 - i] = leaf(i);
  for (let i = n - 2; i >= 0; i--) {
    const a = tree[2 * i + 1]!;
    const b = tree[2 * i + 2]!;
    tree[i] = compareBytes(a, b) <= 0 ? keccak256Bytes(a, b) : keccak256Bytes(b, a);
  }
  const hex = new Array<Hex | undefined>(tree.length);
  const node = (i: number): Hex => (hex[i] ??= bytesToHex(tree[i]!));
  return {
    root: node(0),
    size: n,
    proof: (index) => {
      checkIndex(index, n, what);
      const proof: Hex[] = [];
      for (let i = tree.length - 1 - index; i > 0; i = (i - 1) >> 1)
        proof.push(node(i % 2 === 1 ? i + 1 : i - 1));
      return proof;
    },
  };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

export function verifyTraceProof(root: Hex, index: number, tensorHash: Hex, proof: readonly Hex[]): boolean {
  return verify(root, TRACE_TYPES, [BigInt(index), tensorHash], proof);
}
