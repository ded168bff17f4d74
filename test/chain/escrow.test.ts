import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  deposit,
  getDeposit,
  getRedeemed,
  getTokenBalance,
  getWithdrawal,
  readFrom,
  redeemVoucher,
  requestWithdrawal,
  withdrawDeposit,
} from '../../src/chain/index.js';
import { signVoucher, type SignedVoucher } from '../../src/protocol/voucher.js';
import { E18, expectRevert, startTestChain, TEST_PARAMS, type TestChain } from './support.js';

let chain: TestChain;
beforeAll(async () => {
  chain = await startTestChain();
});
afterAll(async () => {
  await chain?.stop();
});
beforeEach(async () => {
  await chain.reset();
});

const CLIENT = 5;
const PROVIDER = 1;

function voucher(
  amount: bigint,
  opts: { provider?: number; chainId?: number; escrow?: `0x${string}`; signer?: number } = {},
): Promise<SignedVoucher> {
  return signVoucher(
    privateKeyToAccount(chain.key(opts.signer ?? CLIENT)),
    { client: chain.address(CLIENT), provider: chain.address(opts.provider ?? PROVIDER), amount },
    {
      chainId: opts.chainId ?? chain.anvil.chainId,
      verifyingContract: opts.escrow ?? chain.deployment.contracts.paymentEscrow,
    },
  );
}

describe('PaymentEscrow', () => {
  it('takes deposits and pays a provider the increase of each cumulative voucher', async () => {
    await deposit(chain.as(CLIENT), 100n * E18);
    expect(await getDeposit(chain.as(0), chain.address(CLIENT))).toBe(100n * E18);
    const before = await getTokenBalance(chain.as(0), chain.address(PROVIDER));
    expect((await redeemVoucher(chain.as(PROVIDER), await voucher(3n * E18))).paid).toBe(3n * E18);
    expect((await redeemVoucher(chain.as(PROVIDER), await voucher(10n * E18))).paid).toBe(7n * E18);
    expect(await getTokenBalance(chain.as(0), chain.address(PROVIDER))).toBe(before + 10n * E18);
    expect(
      await getRedeemed(chain.as(0), { client: chain.address(CLIENT), provider: chain.address(PROVIDER) }),
    ).toBe(10n * E18);
    expect(await getDeposit(chain.as(0), chain.address(CLIENT))).toBe(90n * E18);
    await expectRevert(deposit(chain.as(CLIENT), 0n), 'ZeroAmount');
  });

  it('the contract digest equals the one src/protocol signs', async () => {
    const v = await voucher(5n);
    const onChain = await readFrom(chain.as(0), 'paymentEscrow', 'voucherDigest', [v.voucher]);
    const { hashTypedData } = await import('viem');
    const { VOUCHER_TYPES, voucherDomain } = await import('../../src/protocol/voucher.js');
    expect(onChain).toBe(
      hashTypedData({
        domain: voucherDomain({
          chainId: chain.anvil.chainId,
          verifyingContract: chain.deployment.contracts.paymentEscrow,
        }),
        types: VOUCHER_TYPES,
        primaryType: 'Voucher',
        message: v.voucher,
      }),
    );
  });

  it('pays nothing for a replayed or older voucher', async () => {
    await deposit(chain.as(CLIENT), 100n * E18);
    const v5 = await voucher(5n * E18);
    const v3 = await voucher(3n * E18);
    await redeemVoucher(chain.as(PROVIDER), v5);
    await expectRevert(redeemVoucher(chain.as(PROVIDER), v5), 'VoucherAlreadyRedeemed');
    await expectRevert(redeemVoucher(chain.as(PROVIDER), v3), 'VoucherAlreadyRedeemed');
    expect(await getDeposit(chain.as(0), chain.address(CLIENT))).toBe(95n * E18);
  });

  it('refuses a voucher for another provider, another chain, another escrow, or a forged signer', async () => {
    await deposit(chain.as(CLIENT), 100n * E18);
    // provider 2 submits a voucher made out to provider 1
    await expectRevert(redeemVoucher(chain.as(2), await voucher(E18)), 'NotVoucherProvider');
    // signed for another chain id or escrow: the signature recovers to someone else
    await expectRevert(
      redeemVoucher(chain.as(PROVIDER), await voucher(E18, { chainId: 1 })),
      'InvalidVoucherSignature',
    );
    await expectRevert(
      redeemVoucher(
        chain.as(PROVIDER),
        await voucher(E18, { escrow: chain.deployment.contracts.receiptLedger }),
      ),
      'InvalidVoucherSignature',
    );
    // signed by the provider itself, not the client
    await expectRevert(
      redeemVoucher(chain.as(PROVIDER), await voucher(E18, { signer: PROVIDER })),
      'InvalidVoucherSignature',
    );
    const v = await voucher(E18);
    await expectRevert(
      redeemVoucher(chain.as(PROVIDER), { ...v, signature: '0x1234' }),
      'ECDSAInvalidSignatureLength',
    );
    // well-formed 65 bytes (r = 0, s = 1, v = 27, s in the lower half) that ecrecover maps to nobody
    const nobody = `0x${'00'.repeat(32)}${'00'.repeat(31)}01${'1b'}` as const;
    await expectRevert(
      redeemVoucher(chain.as(PROVIDER), { ...v, signature: nobody }),
      'ECDSAInvalidSignature',
    );
    expect(await getDeposit(chain.as(0), chain.address(CLIENT))).toBe(100n * E18);
  });

  it('pays at most the deposit and lets the rest be redeemed after a top-up', async () => {
    await expectRevert(redeemVoucher(chain.as(PROVIDER), await voucher(E18)), 'InsufficientDeposit');
    await deposit(chain.as(CLIENT), 4n * E18);
    const v = await voucher(10n * E18);
    expect((await redeemVoucher(chain.as(PROVIDER), v)).paid).toBe(4n * E18);
    await deposit(chain.as(CLIENT), 20n * E18);
    expect((await redeemVoucher(chain.as(PROVIDER), v)).paid).toBe(6n * E18);
    expect(await getDeposit(chain.as(0), chain.address(CLIENT))).toBe(14n * E18);
  });

  it('withdraws only after the delay, and a withdrawal racing a redemption gets what is left', async () => {
    await deposit(chain.as(CLIENT), 10n * E18);
    await expectRevert(withdrawDeposit(chain.as(CLIENT)), 'NoWithdrawalPending');
    await expectRevert(requestWithdrawal(chain.as(CLIENT), 0n), 'ZeroAmount');
    await expectRevert(requestWithdrawal(chain.as(CLIENT), 11n * E18), 'InsufficientDeposit');
    await requestWithdrawal(chain.as(CLIENT), 10n * E18);
    expect((await getWithdrawal(chain.as(0), chain.address(CLIENT)))!.amount).toBe(10n * E18);
    await expectRevert(withdrawDeposit(chain.as(CLIENT)), 'WithdrawalLocked');
    // the provider redeems during the delay: it is paid in full
    expect((await redeemVoucher(chain.as(PROVIDER), await voucher(7n * E18))).paid).toBe(7n * E18);
    await chain.increaseTime(TEST_PARAMS.withdrawalDelayMs!);
    const before = await getTokenBalance(chain.as(0), chain.address(CLIENT));
    expect((await withdrawDeposit(chain.as(CLIENT))).amount).toBe(3n * E18);
    expect(await getTokenBalance(chain.as(0), chain.address(CLIENT))).toBe(before + 3n * E18);
    expect(await getDeposit(chain.as(0), chain.address(CLIENT))).toBe(0n);
    expect(await getWithdrawal(chain.as(0), chain.address(CLIENT))).toBeUndefined();
  });

  it('a withdrawal after redemptions emptied the deposit pays nothing', async () => {
    await deposit(chain.as(CLIENT), 2n * E18);
    await requestWithdrawal(chain.as(CLIENT), 2n * E18);
    await redeemVoucher(chain.as(PROVIDER), await voucher(2n * E18));
    await chain.increaseTime(TEST_PARAMS.withdrawalDelayMs!);
    await expectRevert(withdrawDeposit(chain.as(CLIENT)), 'InsufficientDeposit');
  });
});
