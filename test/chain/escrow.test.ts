import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  deposit,
  getConvictedAt,
  getDeposit,
  getHold,
  getRedeemed,
  getTokenBalance,
  getWithdrawal,
  readFrom,
  redeemVoucher,
  registerModel,
  registerProvider,
  releaseHold,
  reportEquivocation,
  requestWithdrawal,
  sendTo,
  withdrawDeposit,
} from '../../src/chain/index.js';
import { modelDigest } from '../../src/protocol/manifest.js';
import { signReceipt } from '../../src/protocol/receipt.js';
import { signVoucher, type SignedVoucher } from '../../src/protocol/voucher.js';
import {
  E18,
  expectRevert,
  h,
  HOLD_DUE_MS,
  makeReceipt,
  modelOf,
  TEST_PARAMS,
  useTestChain,
} from './support.js';

const chain = useTestChain();

const CLIENT = 5;
const PROVIDER = 1;
const channel = () => ({ client: chain().address(CLIENT), provider: chain().address(PROVIDER) });

function voucher(
  amount: bigint,
  opts: { provider?: number; chainId?: number; escrow?: `0x${string}`; signer?: number } = {},
): Promise<SignedVoucher> {
  return signVoucher(
    privateKeyToAccount(chain().key(opts.signer ?? CLIENT)),
    { client: chain().address(CLIENT), provider: chain().address(opts.provider ?? PROVIDER), amount },
    {
      chainId: opts.chainId ?? chain().anvil.chainId,
      verifyingContract: opts.escrow ?? chain().deployment.contracts.paymentEscrow,
    },
  );
}

describe('PaymentEscrow', () => {
  it('takes deposits and pays a provider the increase of each cumulative voucher', async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(100n * E18);
    const before = await getTokenBalance(chain().as(0), chain().address(PROVIDER));
    expect((await redeemVoucher(chain().as(PROVIDER), await voucher(3n * E18))).paid).toBe(3n * E18);
    expect((await redeemVoucher(chain().as(PROVIDER), await voucher(10n * E18))).paid).toBe(7n * E18);
    // held, not paid: both redemptions wait out the hold (in one bucket: same slot)
    expect(await getTokenBalance(chain().as(0), chain().address(PROVIDER))).toBe(before);
    expect((await getHold(chain().as(0), channel()))!.amount).toBe(10n * E18);
    expect((await releaseHold(chain().as(CLIENT), channel())).released).toBe(0n); // too early: nothing
    await chain().increaseTime(HOLD_DUE_MS);
    expect((await releaseHold(chain().as(CLIENT), channel())).released).toBe(10n * E18); // anyone may release
    expect(await getTokenBalance(chain().as(0), chain().address(PROVIDER))).toBe(before + 10n * E18);
    expect(await getHold(chain().as(0), channel())).toBeUndefined();
    expect(
      await getRedeemed(chain().as(0), {
        client: chain().address(CLIENT),
        provider: chain().address(PROVIDER),
      }),
    ).toBe(10n * E18);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(90n * E18);
    await expectRevert(deposit(chain().as(CLIENT), 0n), 'ZeroAmount');
  });

  it('the contract digest equals the one src/protocol signs', async () => {
    const v = await voucher(5n);
    const onChain = await readFrom(chain().as(0), 'paymentEscrow', 'voucherDigest', [v.voucher]);
    const { hashTypedData } = await import('viem');
    const { VOUCHER_TYPES, voucherDomain } = await import('../../src/protocol/voucher.js');
    expect(onChain).toBe(
      hashTypedData({
        domain: voucherDomain({
          chainId: chain().anvil.chainId,
          verifyingContract: chain().deployment.contracts.paymentEscrow,
        }),
        types: VOUCHER_TYPES,
        primaryType: 'Voucher',
        message: v.voucher,
      }),
    );
  });

  it('pays nothing for a replayed or older voucher', async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    const v5 = await voucher(5n * E18);
    const v3 = await voucher(3n * E18);
    await redeemVoucher(chain().as(PROVIDER), v5);
    await expectRevert(redeemVoucher(chain().as(PROVIDER), v5), 'VoucherAlreadyRedeemed');
    await expectRevert(redeemVoucher(chain().as(PROVIDER), v3), 'VoucherAlreadyRedeemed');
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(95n * E18);
  });

  it('refuses a voucher for another provider, another chain, another escrow, or a forged signer', async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    // provider 2 submits a voucher made out to provider 1
    await expectRevert(redeemVoucher(chain().as(2), await voucher(E18)), 'NotVoucherProvider');
    // signed for another chain id or escrow: the signature recovers to someone else
    await expectRevert(
      redeemVoucher(chain().as(PROVIDER), await voucher(E18, { chainId: 1 })),
      'InvalidVoucherSignature',
    );
    await expectRevert(
      redeemVoucher(
        chain().as(PROVIDER),
        await voucher(E18, { escrow: chain().deployment.contracts.receiptLedger }),
      ),
      'InvalidVoucherSignature',
    );
    // signed by the provider itself, not the client
    await expectRevert(
      redeemVoucher(chain().as(PROVIDER), await voucher(E18, { signer: PROVIDER })),
      'InvalidVoucherSignature',
    );
    const v = await voucher(E18);
    await expectRevert(
      redeemVoucher(chain().as(PROVIDER), { ...v, signature: '0x1234' }),
      'ECDSAInvalidSignatureLength',
    );
    // well-formed 65 bytes (r = 0, s = 1, v = 27, s in the lower half) that ecrecover maps to nobody
    const nobody = `0x${'00'.repeat(32)}${'00'.repeat(31)}01${'1b'}` as const;
    await expectRevert(
      redeemVoucher(chain().as(PROVIDER), { ...v, signature: nobody }),
      'ECDSAInvalidSignature',
    );
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(100n * E18);
  });

  it('pays at most the deposit and lets the rest be redeemed after a top-up', async () => {
    await expectRevert(redeemVoucher(chain().as(PROVIDER), await voucher(E18)), 'InsufficientDeposit');
    await deposit(chain().as(CLIENT), 4n * E18);
    const v = await voucher(10n * E18);
    expect((await redeemVoucher(chain().as(PROVIDER), v)).paid).toBe(4n * E18);
    await deposit(chain().as(CLIENT), 20n * E18);
    expect((await redeemVoucher(chain().as(PROVIDER), v)).paid).toBe(6n * E18);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(14n * E18);
  });

  it('withdraws only after the delay, and a withdrawal racing a redemption gets what is left', async () => {
    await deposit(chain().as(CLIENT), 10n * E18);
    await expectRevert(withdrawDeposit(chain().as(CLIENT)), 'NoWithdrawalPending');
    await expectRevert(requestWithdrawal(chain().as(CLIENT), 0n), 'ZeroAmount');
    await expectRevert(requestWithdrawal(chain().as(CLIENT), 11n * E18), 'InsufficientDeposit');
    await requestWithdrawal(chain().as(CLIENT), 10n * E18);
    expect((await getWithdrawal(chain().as(0), chain().address(CLIENT)))!.amount).toBe(10n * E18);
    await expectRevert(withdrawDeposit(chain().as(CLIENT)), 'WithdrawalLocked');
    // the provider redeems during the delay: it is paid in full
    expect((await redeemVoucher(chain().as(PROVIDER), await voucher(7n * E18))).paid).toBe(7n * E18);
    await chain().increaseTime(TEST_PARAMS.withdrawalDelayMs!);
    const before = await getTokenBalance(chain().as(0), chain().address(CLIENT));
    expect((await withdrawDeposit(chain().as(CLIENT))).amount).toBe(3n * E18);
    expect(await getTokenBalance(chain().as(0), chain().address(CLIENT))).toBe(before + 3n * E18);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(0n);
    expect(await getWithdrawal(chain().as(0), chain().address(CLIENT))).toBeUndefined();
  });

  it('a withdrawal after redemptions emptied the deposit pays nothing', async () => {
    await deposit(chain().as(CLIENT), 2n * E18);
    await requestWithdrawal(chain().as(CLIENT), 2n * E18);
    await redeemVoucher(chain().as(PROVIDER), await voucher(2n * E18));
    await chain().increaseTime(TEST_PARAMS.withdrawalDelayMs!);
    await expectRevert(withdrawDeposit(chain().as(CLIENT)), 'InsufficientDeposit');
  });
});

describe('PaymentEscrow: held payments and convictions', () => {
  /** Convicts PROVIDER for real: an equivocation on an exact model, reported by account 9. */
  async function convict(): Promise<void> {
    const model = modelDigest(modelOf(`exact${Math.random()}`));
    await registerModel(chain().as(0), { model, exact: true });
    const p = await getProviderRegistered();
    const timestamp = (await chain().as(0).publicClient.getBlock()).timestamp * 1000n; // fresh
    const sign = (out: string) =>
      signReceipt(
        privateKeyToAccount(chain().key(PROVIDER)),
        makeReceipt({ provider: p, model, requestId: h('r'), outputHash: h(out), timestamp }),
        { chainId: chain().anvil.chainId, verifyingContract: chain().deployment.contracts.receiptLedger },
      );
    await reportEquivocation(chain().as(9), { a: await sign('a'), b: await sign('b') });
  }
  async function getProviderRegistered() {
    await registerProvider(chain().as(PROVIDER), {
      endpoint: 'http://p',
      signer: chain().address(PROVIDER),
      stake: TEST_PARAMS.minStake!,
    });
    return chain().address(PROVIDER);
  }

  it('a conviction during the hold refunds the held payment to the client; the provider gets nothing', async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    const before = await getTokenBalance(chain().as(0), chain().address(PROVIDER));
    await redeemVoucher(chain().as(PROVIDER), await voucher(30n * E18));
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(70n * E18);
    await convict();
    expect(await getConvictedAt(chain().as(0), chain().address(PROVIDER))).toBeGreaterThan(0);
    await chain().increaseTime(HOLD_DUE_MS);
    const settled = await releaseHold(chain().as(CLIENT), channel());
    expect([settled.released, settled.refunded]).toEqual([0n, 30n * E18]);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(100n * E18);
    // the provider's balance only lost the stake it registered with (slashed and locked), no payment came in
    expect(await getTokenBalance(chain().as(0), chain().address(PROVIDER))).toBe(
      before - TEST_PARAMS.minStake!,
    );
  });

  it('after a conviction the next redemption of each channel is refunded; later ones are paid again', async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    await convict(); // before any redemption: the vouchers so far paid for pre-conviction answers
    const first = await redeemVoucher(chain().as(PROVIDER), await voucher(20n * E18));
    expect([first.paid, first.refunded]).toEqual([20n * E18, true]);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(100n * E18);
    expect(await getHold(chain().as(0), channel())).toBeUndefined();
    await expectRevert(
      redeemVoucher(chain().as(PROVIDER), await voucher(20n * E18)),
      'VoucherAlreadyRedeemed',
    );
    await chain().increaseTime(1000);
    const second = await redeemVoucher(chain().as(PROVIDER), await voucher(25n * E18));
    expect([second.paid, second.refunded]).toEqual([5n * E18, false]);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(95n * E18);
  });

  it('H-2: redeeming while a hold runs never delays money already held, so a provider can redeem any time', async () => {
    const HOLD = TEST_PARAMS.paymentHoldMs!;
    await deposit(chain().as(CLIENT), 100n * E18);
    const before = await getTokenBalance(chain().as(0), chain().address(PROVIDER));
    // redeem every quarter of the hold period: a busy channel, or a provider racing a withdrawal
    for (let i = 1n; i <= 6n; i++) {
      await redeemVoucher(chain().as(PROVIDER), await voucher(i * 10n * E18));
      await chain().increaseTime(HOLD / 4);
    }
    // 6 redemptions over 1.5 hold periods: the first ones are paid, each after its own hold
    const hold = (await getHold(chain().as(0), channel()))!;
    expect(hold.buckets.length).toBeLessThanOrEqual(10);
    const paid = (await getTokenBalance(chain().as(0), chain().address(PROVIDER))) - before;
    expect(paid + hold.amount).toBe(60n * E18);
    expect(paid).toBeGreaterThanOrEqual(10n * E18);
    for (const b of hold.buckets) expect(b.releaseAtMs - b.sinceMs).toBeGreaterThanOrEqual(HOLD);
    await chain().increaseTime(HOLD_DUE_MS);
    await releaseHold(chain().as(9), channel());
    expect(await getTokenBalance(chain().as(0), chain().address(PROVIDER))).toBe(before + 60n * E18);
    expect(await getHold(chain().as(0), channel())).toBeUndefined();
  });

  it('a conviction refunds every bucket begun before it, however many', async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    for (let i = 1n; i <= 3n; i++) {
      await redeemVoucher(chain().as(PROVIDER), await voucher(i * 10n * E18));
      await chain().increaseTime(TEST_PARAMS.paymentHoldMs! / 4);
    }
    expect((await getHold(chain().as(0), channel()))!.buckets.length).toBe(3);
    await convict();
    const settled = await releaseHold(chain().as(CLIENT), channel());
    expect([settled.released, settled.refunded]).toEqual([0n, 30n * E18]);
    expect(await getDeposit(chain().as(0), chain().address(CLIENT))).toBe(100n * E18);
  });

  it("a conviction refunds only buckets whose hold had not ended; one already due is the provider's", async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    const before = await getTokenBalance(chain().as(0), chain().address(PROVIDER));
    await redeemVoucher(chain().as(PROVIDER), await voucher(10n * E18));
    await chain().increaseTime(HOLD_DUE_MS); // that hold is over, but nobody released it yet
    await convict();
    const settled = await releaseHold(chain().as(CLIENT), channel());
    expect([settled.released, settled.refunded]).toEqual([10n * E18, 0n]);
    // what it earned before the conviction it keeps (its stake was slashed, that's all)
    expect(await getTokenBalance(chain().as(0), chain().address(PROVIDER))).toBe(
      before + 10n * E18 - TEST_PARAMS.minStake!,
    );
  });

  it('a new channel is paid again once a hold period has passed since the conviction', async () => {
    await deposit(chain().as(CLIENT), 100n * E18);
    await convict();
    await chain().increaseTime(HOLD_DUE_MS);
    const first = await redeemVoucher(chain().as(PROVIDER), await voucher(20n * E18));
    expect([first.paid, first.refunded]).toEqual([20n * E18, false]);
  });

  it('convict is callable by nobody but the DisputeManager, and wiring happens once', async () => {
    await expectRevert(
      sendTo(chain().as(0), 'paymentEscrow', 'convict', [chain().address(PROVIDER)]),
      'NotDisputeManager',
    );
    await expectRevert(
      sendTo(chain().as(0), 'paymentEscrow', 'setDisputeManager', [chain().address(3)]),
      'AlreadyWired',
    );
  });
});
