import { keccak256, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  approveToken,
  challengeAvailability,
  commitBatch,
  deposit,
  exclusive,
  getBatchCount,
  getChallenge,
  getDeposit,
  getRedeemed,
  openChallenge,
  redeemVoucher,
  registerModel,
  registerProvider,
  resolveChallenge,
  sendTo,
  settleChallenge,
  withAccount,
  withAllowance,
  type GlassboxClient,
} from '../../src/chain/index.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { batchTree } from '../../src/protocol/merkle.js';
import { receiptHash } from '../../src/protocol/receipt.js';
import { signVoucher } from '../../src/protocol/voucher.js';
import { E18, h, makeReceipt, modelOf, registerVoter, TEST_PARAMS, useTestChain } from './support.js';

const chain = useTestChain(TEST_PARAMS, 10);

/*
 * One sender per account (src/chain/client.ts): flows of one account that run at the same time
 * each read the pending nonce; without the account's lane they sent two transactions with one
 * nonce and one was refused ("nonce too low"). And `resolve`, which anyone may call, raced by two
 * accounts: the loser's revert is told apart from a real failure by the challenge's status.
 */

const PROVIDER = 1;
const CLIENT = 5;
const CHALLENGER = 8;

/** Another client object for the same account: the lane is the account's, not the object's. */
const sameAccount = (i: number) => withAccount(chain().as(0), chain().key(i));

async function provider(): Promise<Hex> {
  const model = modelDigest(modelOf('exact'));
  await registerModel(chain().as(0), { model, exact: true });
  await registerProvider(chain().as(PROVIDER), {
    endpoint: 'http://p',
    signer: chain().address(PROVIDER),
    stake: 200n * E18,
  });
  return model;
}

/** Commits a batch of `n` receipts of the provider; returns them with their proofs. */
async function committedBatch(model: Hex, n: number) {
  const receipts = Array.from({ length: n }, (_, i) =>
    makeReceipt({ provider: chain().address(PROVIDER), model, requestId: h(`r${i}`), inputHash: h('in') }),
  );
  const tree = batchTree(receipts.map(receiptHash));
  const { batchId } = await commitBatch(chain().as(PROVIDER), { root: tree.root, count: n, uri: 'http://p' });
  return receipts.map((receipt, i) => ({ receipt, batchId, proof: tree.proof(i) }));
}

describe('one sender per account', () => {
  it('batch commits racing voucher redemptions of the same account all land', async () => {
    await provider();
    await deposit(chain().as(CLIENT), 100n * E18);
    const client = privateKeyToAccount(chain().key(CLIENT));
    const domain = {
      chainId: chain().anvil.chainId,
      verifyingContract: chain().deployment.contracts.paymentEscrow,
    };
    const voucher = (amount: bigint) =>
      signVoucher(client, { client: client.address, provider: chain().address(PROVIDER), amount }, domain);
    const [v1, v2] = [await voucher(1n * E18), await voucher(3n * E18)];
    const before = await getBatchCount(chain().as(0));
    const root = (i: number) => keccak256(new TextEncoder().encode(`root ${i}`));

    const results = await Promise.all([
      commitBatch(chain().as(PROVIDER), { root: root(0), count: 1, uri: 'http://p' }),
      redeemVoucher(sameAccount(PROVIDER), v1),
      commitBatch(sameAccount(PROVIDER), { root: root(1), count: 1, uri: 'http://p' }),
      redeemVoucher(chain().as(PROVIDER), v2),
      commitBatch(chain().as(PROVIDER), { root: root(2), count: 1, uri: 'http://p' }),
    ]);

    expect(results.every((r) => r.receipt.status === 'success')).toBe(true);
    expect(await getBatchCount(chain().as(0))).toBe(before + 3n);
    expect(
      await getRedeemed(chain().as(0), { client: client.address, provider: chain().address(PROVIDER) }),
    ).toBe(3n * E18);
    // one account, one transaction at a time: five distinct nonces, in five blocks
    const nonces = await Promise.all(
      results.map(async (r) => (await chain().as(0).publicClient.getTransaction({ hash: r.hash })).nonce),
    );
    expect(new Set(nonces).size).toBe(5);
  });

  it('two approve-then-spend flows of one account at once both land (withAllowance)', async () => {
    const spend = (amount: bigint) =>
      withAllowance(chain().as(CLIENT), 'paymentEscrow', amount, (held) =>
        sendTo(held, 'paymentEscrow', 'deposit', [amount]),
      );
    await Promise.all([spend(5n * E18), spend(7n * E18), spend(11n * E18)]);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(23n * E18);
  });

  it('two challenges opened by one account at once both land (exclusive around approve + open)', async () => {
    const model = await provider();
    for (const v of [2, 3, 4])
      await registerVoter(chain().as(v), {
        endpoint: `http://v${v}`,
        signer: chain().address(v),
        stake: 100n * E18,
      });
    const [a, b] = await committedBatch(model, 2);
    const open = (r: typeof a) =>
      exclusive(chain().as(CHALLENGER), (held) =>
        openChallenge(held, {
          receipt: r!.receipt,
          batchId: r!.batchId,
          proof: r!.proof,
          inputsUri: 'http://e',
        }),
      );
    const [x, y] = await Promise.all([open(a), open(b)]);
    expect(x.challengeId).not.toBe(y.challengeId);
    for (const id of [x.challengeId, y.challengeId])
      expect((await getChallenge(chain().as(0), id)).status).toBe('open');
  });

  it('a nested exclusive with the held client runs at once; an ended lease no longer skips the lane', async () => {
    let leaked: GlassboxClient | undefined;
    const inner = await exclusive(chain().as(CLIENT), (held) => {
      leaked = held;
      return exclusive(held, async (again) => {
        await deposit(again, 1n * E18);
        return again.holds?.active;
      });
    });
    expect(inner).toBe(true);
    expect(leaked!.holds?.active).toBe(false);
    // used after its task ended, the client queues like any other: both transactions land
    const [a, b] = await Promise.all([
      approveToken(leaked!, { spender: chain().address(2), amount: 1n }),
      approveToken(chain().as(CLIENT), { spender: chain().address(3), amount: 1n }),
    ]);
    expect(a.blockNumber).not.toBe(b.blockNumber);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(1n * E18);
  });
});

describe('settleChallenge', () => {
  /** An availability challenge past its answer period: due, and upheld by whoever resolves it. */
  async function dueChallenge(): Promise<bigint> {
    const [r] = await committedBatch(await provider(), 1);
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), {
      provider: chain().address(PROVIDER),
      batchId: r!.batchId,
      receiptHash: receiptHash(r!.receipt),
      proof: r!.proof,
    });
    await chain().increaseTime(TEST_PARAMS.answerPeriodMs! + 1000);
    return challengeId;
  }

  /** Runs `race` with both transactions mined in one block, after both simulations passed. */
  async function inOneBlock<T>(race: () => Promise<T>): Promise<T> {
    await chain().rpc('evm_setAutomine', [false]);
    try {
      const settled = race();
      const until = Date.now() + 10_000;
      for (;;) {
        const pool = await chain().rpc<{ pending: Hex }>('txpool_status');
        if (Number(pool.pending) >= 2) break;
        if (Date.now() > until) throw new Error('the two transactions never reached the pool');
        await new Promise((r) => setTimeout(r, 10));
      }
      await chain().rpc('evm_mine');
      return await settled;
    } finally {
      await chain().rpc('evm_setAutomine', [true]);
    }
  }

  it('two accounts resolving at once: the loser reverts on chain, named ChallengeNotOpen', async () => {
    const id = await dueChallenge();
    const outcomes = await inOneBlock(() =>
      Promise.allSettled([resolveChallenge(chain().as(2), id), resolveChallenge(chain().as(3), id)]),
    );
    const lost = outcomes
      .filter((o) => o.status === 'rejected')
      .map((o) => (o as PromiseRejectedResult).reason);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(isGlassboxError(lost[0], 'CHAIN_REVERTED')).toBe(true);
    expect((lost[0] as { details: { error: string } }).details.error).toBe('ChallengeNotOpen');
    expect((lost[0] as Error).message).toMatch(/resolve reverted on chain: ChallengeNotOpen/);
  });

  it('two accounts settling at once both get the final status; only one sent the winning resolve', async () => {
    const id = await dueChallenge();
    const [a, b] = await inOneBlock(() =>
      Promise.all([settleChallenge(chain().as(2), id), settleChallenge(chain().as(3), id)]),
    );
    expect(a.status).toBe('upheld');
    expect(b.status).toBe('upheld');
    expect([a.tx, b.tx].filter((tx) => tx !== undefined)).toHaveLength(1);
    // settled already: read, nothing sent
    expect(await settleChallenge(chain().as(4), id)).toEqual({ status: 'upheld' });
  });

  it('a challenge that is not due yet is not "settled": the revert is thrown', async () => {
    const [r] = await committedBatch(await provider(), 1);
    const { challengeId } = await challengeAvailability(chain().as(CHALLENGER), {
      provider: chain().address(PROVIDER),
      batchId: r!.batchId,
      receiptHash: receiptHash(r!.receipt),
      proof: r!.proof,
    });
    const error = await settleChallenge(chain().as(2), challengeId).catch((e: unknown) => e);
    expect(isGlassboxError(error, 'CHAIN_REVERTED')).toBe(true);
    expect((error as { details: { error: string } }).details.error).toBe('TooEarly');
  });
});
