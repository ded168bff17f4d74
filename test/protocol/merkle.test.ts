import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import fc from 'fast-check';
import { keccak256, toHex, type Hex } from 'viem';
import { describe, expect, it } from 'vitest';
import {
  batchLeaf,
  batchTree,
  traceRoot,
  traceTree,
  verifyBatchProof,
  verifyTraceProof,
} from '../../src/protocol/merkle.js';

const hashArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => toHex(b));
const leavesArb = fc.array(hashArb, { minLength: 1, maxLength: 40 });

describe('batch trees', () => {
  it('prove every leaf, and no proof survives tampering with the leaf, a sibling or the root', () => {
    fc.assert(
      fc.property(leavesArb, hashArb, (leaves, other) => {
        const tree = batchTree(leaves);
        leaves.forEach((leaf, i) => {
          const proof = tree.proof(i);
          expect(verifyBatchProof(tree.root, leaf, proof)).toBe(true);
          if (!leaves.includes(other)) expect(verifyBatchProof(tree.root, other, proof)).toBe(false);
          expect(verifyBatchProof(keccak256(tree.root), leaf, proof)).toBe(false);
          if (proof.length > 0) {
            const tampered = [...proof];
            tampered[0] = keccak256(tampered[0]!);
            expect(verifyBatchProof(tree.root, leaf, tampered)).toBe(false);
          }
        });
      }),
      { numRuns: 100 },
    );
  });

  it('is what @openzeppelin/merkle-tree builds, so OpenZeppelin MerkleProof verifies it', () => {
    fc.assert(
      fc.property(leavesArb, (leaves) => {
        const reference = StandardMerkleTree.of(
          leaves.map((l) => [l]),
          ['bytes32'],
          { sortLeaves: false },
        );
        expect(batchTree(leaves).root).toBe(reference.root);
        expect(batchLeaf(leaves[0]!)).toBe(reference.leafHash([leaves[0]!]));
      }),
    );
  });

  it('refuses an empty batch and out-of-range leaves', () => {
    expect(() => batchTree([])).toThrow(expect.objectContaining({ code: 'MERKLE_INVALID' }));
    expect(() => batchTree([keccak256('0x01')]).proof(1)).toThrow(
      expect.objectContaining({ code: 'MERKLE_INVALID' }),
    );
  });

  it('treats a malformed proof as no proof', () => {
    const tree = batchTree([keccak256('0x01'), keccak256('0x02')]);
    expect(verifyBatchProof(tree.root, keccak256('0x01'), ['0xzz' as Hex])).toBe(false);
  });
});

describe('trace trees', () => {
  it("have traceRoot's root, which is OpenZeppelin's for every size", () => {
    fc.assert(
      fc.property(fc.array(hashArb, { minLength: 1, maxLength: 70 }), (hashes) => {
        expect(traceRoot(hashes)).toBe(traceTree(hashes).root);
      }),
      { numRuns: 200 },
    );
    expect(() => traceRoot([])).toThrow(expect.objectContaining({ code: 'MERKLE_INVALID' }));
  });

  it('bind each hash to its position', () => {
    fc.assert(
      fc.property(fc.array(hashArb, { minLength: 2, maxLength: 20 }), (hashes) => {
        fc.pre(new Set(hashes).size === hashes.length);
        const tree = traceTree(hashes);
        hashes.forEach((h, i) => {
          expect(verifyTraceProof(tree.root, i, h, tree.proof(i))).toBe(true);
          expect(verifyTraceProof(tree.root, (i + 1) % hashes.length, h, tree.proof(i))).toBe(false);
        });
      }),
      { numRuns: 50 },
    );
  });
});
