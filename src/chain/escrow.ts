import type { Address } from 'viem';
import type { SignedVoucher } from '../protocol/voucher.js';
import { eventsOf, secondsToMs, type GlassboxClient, type TxResult } from './client.js';
import { ABIS, readFrom, sendTo } from './contracts.js';
import { ensureAllowance } from './token.js';

/** Deposits `amount` into the escrow for the account (approving first if needed). */
export async function deposit(client: GlassboxClient, amount: bigint): Promise<TxResult> {
  await ensureAllowance(client, 'paymentEscrow', amount);
  return sendTo(client, 'paymentEscrow', 'deposit', [amount]);
}

/**
 * Redeems a cumulative voucher (the account must be the voucher's provider). `paid` is the
 * increase over what was already redeemed, capped by the client's deposit.
 */
export async function redeemVoucher(
  client: GlassboxClient,
  signed: SignedVoucher,
): Promise<TxResult & { paid: bigint }> {
  const tx = await sendTo(client, 'paymentEscrow', 'redeem', [signed.voucher, signed.signature]);
  const [event] = eventsOf<{ paid: bigint }>(ABIS.paymentEscrow, 'Redeemed', tx.receipt.logs);
  return { ...tx, paid: event?.paid ?? 0n };
}

/** Starts (or replaces) a withdrawal; it can complete after the withdrawal delay. */
export function requestWithdrawal(client: GlassboxClient, amount: bigint): Promise<TxResult> {
  return sendTo(client, 'paymentEscrow', 'requestWithdrawal', [amount]);
}

/** Completes the pending withdrawal: the requested amount, or what redemptions left of it. */
export async function withdrawDeposit(client: GlassboxClient): Promise<TxResult & { amount: bigint }> {
  const tx = await sendTo(client, 'paymentEscrow', 'withdraw');
  const [event] = eventsOf<{ amount: bigint }>(ABIS.paymentEscrow, 'Withdrawn', tx.receipt.logs);
  return { ...tx, amount: event?.amount ?? 0n };
}

export function getDeposit(client: GlassboxClient, account: Address): Promise<bigint> {
  return readFrom<bigint>(client, 'paymentEscrow', 'deposits', [account]);
}

/** What `provider` has redeemed from `client` so far (the cumulative amount). */
export function getRedeemed(
  client: GlassboxClient,
  params: { client: Address; provider: Address },
): Promise<bigint> {
  return readFrom<bigint>(client, 'paymentEscrow', 'redeemed', [params.client, params.provider]);
}

export async function getWithdrawal(
  client: GlassboxClient,
  account: Address,
): Promise<{ amount: bigint; unlocksAtMs: number } | undefined> {
  const [amount, unlocksAt] = await readFrom<readonly [bigint, bigint]>(
    client,
    'paymentEscrow',
    'withdrawals',
    [account],
  );
  return amount === 0n ? undefined : { amount, unlocksAtMs: secondsToMs(unlocksAt) };
}
