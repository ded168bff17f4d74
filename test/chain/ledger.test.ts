import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  commitBatch,
  getBatch,
  getBatchCommits,
  getBatchCount,
  hashReceiptOnChain,
  isCommitted,
  readFrom,
  recoverReceiptSignerOnChain,
  registerProvider,
  verifyInclusion,
} from '../../src/chain/index.js';
import { batchLeaf, batchTree } from '../../src/protocol/merkle.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { receiptDigest, receiptHash, signReceipt } from '../../src/protocol/receipt.js';
import { expectRevert, h, makeReceipt, modelOf, TEST_PARAMS, useTestChain } from './support.js';

const chain = useTestChain();

const P = 1;
const receipts = (n: number, provider = chain().address(P)) =>
  Array.from({ length: n }, (_, i) =>
    makeReceipt({ provider, model: modelDigest(modelOf('m')), requestId: h(`r${i}`), price: BigInt(i) }),
  );

describe('ReceiptLedger', () => {
  it('hashes receipts exactly as src/protocol does, and recovers the signer of its EIP-712 digest', async () => {
    const [r] = receipts(1);
    expect(await hashReceiptOnChain(chain().as(0), r!)).toBe(receiptHash(r!));
    const domain = {
      chainId: chain().anvil.chainId,
      verifyingContract: chain().deployment.contracts.receiptLedger,
    };
    expect(await readFrom(chain().as(0), 'receiptLedger', 'receiptDigest', [r!])).toBe(
      receiptDigest(r!, domain),
    );
    const signer = privateKeyToAccount(chain().key(7));
    const signed = await signReceipt(signer, r!, domain);
    expect(await recoverReceiptSignerOnChain(chain().as(0), signed)).toBe(signer.address);
    expect(await recoverReceiptSignerOnChain(chain().as(0), { ...signed, signature: '0x00' })).toBe(
      '0x0000000000000000000000000000000000000000',
    );
  });

  it('verifies Merkle proofs built by src/protocol for every receipt of a batch', async () => {
    await registerProvider(chain().as(P), {
      endpoint: 'http://p',
      signer: chain().address(P),
      stake: TEST_PARAMS.minStake!,
    });
    for (const n of [1, 2, 7, 33]) {
      const rs = receipts(n);
      const tree = batchTree(rs.map(receiptHash));
      const { batchId } = await commitBatch(chain().as(P), {
        root: tree.root,
        count: n,
        uri: `ipfs://batch-${n}`,
      });
      const batch = await getBatch(chain().as(0), batchId);
      expect(batch).toMatchObject({ batchId, provider: chain().address(P), root: tree.root, count: n });
      for (let i = 0; i < n; i++) {
        const proof = tree.proof(i);
        expect(
          await verifyInclusion(chain().as(0), { batchId, receiptHash: receiptHash(rs[i]!), proof }),
        ).toBe(true);
        expect(await isCommitted(chain().as(0), { batchId, receipt: rs[i]!, proof })).toBe(true);
      }
      // a receipt not in the batch, or a wrong proof, does not verify
      const outsider = receipts(n + 1)[n]!;
      expect(
        await verifyInclusion(chain().as(0), {
          batchId,
          receiptHash: receiptHash(outsider),
          proof: tree.proof(0),
        }),
      ).toBe(false);
      if (n > 1)
        expect(
          await verifyInclusion(chain().as(0), {
            batchId,
            receiptHash: receiptHash(rs[0]!),
            proof: tree.proof(1),
          }),
        ).toBe(false);
    }
    expect(await getBatchCount(chain().as(0))).toBe(4n);
    const events = await getBatchCommits(chain().as(0), { provider: chain().address(P) });
    expect(events.map((e) => e.args.uri)).toEqual([
      'ipfs://batch-1',
      'ipfs://batch-2',
      'ipfs://batch-7',
      'ipfs://batch-33',
    ]);
    expect(batchLeaf(receiptHash(receipts(1)[0]!))).toMatch(/^0x[0-9a-f]{64}$/);
  });

  it('isCommitted is false for a receipt of another provider under a batch it did not commit', async () => {
    await registerProvider(chain().as(P), {
      endpoint: 'http://p',
      signer: chain().address(P),
      stake: TEST_PARAMS.minStake!,
    });
    const rs = receipts(2, chain().address(2)); // receipts naming provider 2
    const tree = batchTree(rs.map(receiptHash));
    const { batchId } = await commitBatch(chain().as(P), { root: tree.root, count: 2, uri: 'x' });
    expect(
      await verifyInclusion(chain().as(0), {
        batchId,
        receiptHash: receiptHash(rs[0]!),
        proof: tree.proof(0),
      }),
    ).toBe(true);
    expect(await isCommitted(chain().as(0), { batchId, receipt: rs[0]!, proof: tree.proof(0) })).toBe(false);
  });

  it('refuses commits from non-providers, zero roots and empty batches; unknown batch ids', async () => {
    const root = batchTree([h('x')]).root;
    await expectRevert(commitBatch(chain().as(P), { root, count: 1, uri: 'x' }), 'NotRegistered');
    await registerProvider(chain().as(P), {
      endpoint: 'http://p',
      signer: chain().address(P),
      stake: TEST_PARAMS.minStake!,
    });
    await expectRevert(
      commitBatch(chain().as(P), { root: `0x${'0'.repeat(64)}`, count: 1, uri: 'x' }),
      'ZeroRoot',
    );
    await expectRevert(commitBatch(chain().as(P), { root, count: 0, uri: 'x' }), 'ZeroCount');
    await expectRevert(getBatch(chain().as(0), 9n), 'UnknownBatch');
    await expectRevert(
      verifyInclusion(chain().as(0), { batchId: 9n, receiptHash: h('x'), proof: [] }),
      'UnknownBatch',
    );
    await expectRevert(
      isCommitted(chain().as(0), { batchId: 9n, receipt: receipts(1)[0]!, proof: [] }),
      'UnknownBatch',
    );
  });
});
