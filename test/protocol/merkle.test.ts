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

  it('is what @openzeppelin/merkle-tree builds, root and every proof, so OpenZeppelin MerkleProof verifies it', () => {
    // Sizes around powers of two (1..2, 3..4, 7..9, 15..17, 31..33, 63..65) change the heap's
    // shape; duplicates give equal siblings, whose sorted order is a tie.
    const sizeArb = fc.oneof(
      fc.integer({ min: 1, max: 70 }),
      fc.constantFrom(1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 256),
    );
    const batchArb = fc.oneof(
      sizeArb.chain((n) => fc.array(hashArb, { minLength: n, maxLength: n })),
      fc
        .tuple(fc.array(hashArb, { minLength: 1, maxLength: 5 }), sizeArb)
        .map(([pool, n]) => Array.from({ length: n }, (_, i) => pool[(i * 7) % pool.length]!)),
    );
    fc.assert(
      fc.property(batchArb, fc.boolean(), (leaves, upper) => {
        // Receipt hashes may arrive in either case; the tree is over their bytes.
        const input = upper ? leaves.map((l) => `0x${l.slice(2).toUpperCase()}` as Hex) : leaves;
        const reference = StandardMerkleTree.of(
          leaves.map((l) => [l]),
          ['bytes32'],
          { sortLeaves: false },
        );
        const tree = batchTree(input);
        expect(tree.root).toBe(reference.root);
        expect(tree.size).toBe(leaves.length);
        leaves.forEach((leaf, i) => {
          const proof = tree.proof(i);
          expect(proof).toEqual(reference.getProof(i));
          expect(verifyBatchProof(tree.root, leaf, proof)).toBe(true);
          expect(batchLeaf(leaf)).toBe(reference.leafHash([leaf]));
        });
      }),
      { numRuns: 150 },
    );
  });

  it('refuses an empty batch, out-of-range leaves and leaves that are not 32-byte hashes', () => {
    const invalid = expect.objectContaining({ code: 'MERKLE_INVALID' });
    expect(() => batchTree([])).toThrow(invalid);
    const tree = batchTree([keccak256('0x01'), keccak256('0x02')]);
    for (const index of [2, -1, 0.5, Number.NaN]) expect(() => tree.proof(index)).toThrow(invalid);
    for (const bad of ['0x01', `${keccak256('0x01')}00`, `0x${'zz'.repeat(32)}`, keccak256('0x01').slice(2)])
      expect(() => batchTree([keccak256('0x02'), bad as Hex])).toThrow(invalid);
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
