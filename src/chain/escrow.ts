import type { Address } from 'viem';
import type { SignedVoucher } from '../protocol/voucher.js';
import { eventsOf, secondsToMs, type GlassboxClient, type TxResult } from './client.js';
import { ABIS, readFrom, sendTo } from './contracts.js';
import type { ChainCallErrorType, ContractRevertErrorType } from './errors.js';
import { withAllowance } from './token.js';

/** Deposits `amount` into the escrow for the account (approving first if needed). */
export async function deposit(client: GlassboxClient, amount: bigint): Promise<TxResult> {
  return withAllowance(client, 'paymentEscrow', amount, (held) =>
    sendTo(held, 'paymentEscrow', 'deposit', [amount]),
  );
}

/**
 * Why `redeemVoucher` fails. `VoucherAlreadyRedeemed` (`[amount, redeemed]`) and
 * `InsufficientDeposit` (`[balance]`) are the everyday ones: a voucher no higher than what was
 * redeemed, a client with nothing left in escrow.
 */
export type RedeemVoucherErrorType =
  | ContractRevertErrorType<
      | 'NotVoucherProvider'
      | 'InvalidVoucherSignature'
      | 'VoucherAlreadyRedeemed'
      | 'InsufficientDeposit'
      | 'AmountTooLarge'
    >
  | ChainCallErrorType;

/**
 * Redeems a cumulative voucher (the account must be the voucher's provider). `paid` is the
 * increase over what was already redeemed, capped by the client's deposit; it is held for the
 * escrow's hold period, and `refunded` is true when a conviction sent it back to the client
 * instead. The channel's earlier hold settles first: `released` is what it paid the provider now,
 * `returned` what a conviction gave back to the client.
 */
export async function redeemVoucher(
  client: GlassboxClient,
  signed: SignedVoucher,
): Promise<TxResult & { paid: bigint; refunded: boolean; released: bigint; returned: bigint }> {
  const tx = await sendTo(client, 'paymentEscrow', 'redeem', [signed.voucher, signed.signature]);
  const [event] = eventsOf(ABIS.paymentEscrow, 'Redeemed', tx.receipt.logs);
  return {
    ...tx,
    paid: event?.paid ?? 0n,
    refunded: event?.refunded ?? false,
    released: sumOf(tx, 'Released'),
    returned: sumOf(tx, 'Refunded'),
  };
}

/** One bucket of a channel's held payments: the redemptions of one slot of `holdPeriod / 8`. */
export type HoldBucket = { readonly amount: bigint; readonly sinceMs: number; readonly releaseAtMs: number };

/**
 * What a channel holds: the total and its buckets, oldest first (each pays out at its
 * `releaseAtMs`, or goes back to the client if the provider is convicted first).
 */
export type Hold = {
  readonly amount: bigint;
  /** When the oldest bucket pays out. */
  readonly endsAtMs: number;
  readonly buckets: readonly HoldBucket[];
};

/** The channel's payments on hold (undefined when none). */
export async function getHold(
  client: GlassboxClient,
  params: { client: Address; provider: Address },
): Promise<Hold | undefined> {
  const buckets = await readFrom(client, 'paymentEscrow', 'holdsOf', [params.client, params.provider]);
  if (buckets.length === 0) return undefined;
  return {
    amount: buckets.reduce((t, b) => t + b.amount, 0n),
    endsAtMs: secondsToMs(buckets[0]!.releaseAt),
    buckets: buckets.map((b) => ({
      amount: b.amount,
      sinceMs: secondsToMs(b.since),
      releaseAtMs: secondsToMs(b.releaseAt),
    })),
  };
}

/** Settles a channel's hold: pays the provider after the hold period, or refunds a convicted one's. */
export async function releaseHold(
  client: GlassboxClient,
  params: { client: Address; provider: Address },
): Promise<TxResult & { released: bigint; refunded: bigint }> {
  const tx = await sendTo(client, 'paymentEscrow', 'release', [params.client, params.provider]);
  return { ...tx, released: sumOf(tx, 'Released'), refunded: sumOf(tx, 'Refunded') };
}

/** The total `amount` of the escrow's `name` events in a transaction. */
function sumOf(tx: TxResult, name: 'Released' | 'Refunded'): bigint {
  return eventsOf(ABIS.paymentEscrow, name, tx.receipt.logs).reduce((t, e) => t + e.amount, 0n);
}

/** When the provider was last convicted (ms; 0 if never): its held payments go back to clients. */
export async function getConvictedAt(client: GlassboxClient, provider: Address): Promise<number> {
  return secondsToMs(await readFrom(client, 'paymentEscrow', 'convictedAt', [provider]));
}

/** Starts (or replaces) a withdrawal; it can complete after the withdrawal delay. */
export function requestWithdrawal(client: GlassboxClient, amount: bigint): Promise<TxResult> {
  return sendTo(client, 'paymentEscrow', 'requestWithdrawal', [amount]);
}

/** Completes the pending withdrawal: the requested amount, or what redemptions left of it. */
export async function withdrawDeposit(client: GlassboxClient): Promise<TxResult & { amount: bigint }> {
  const tx = await sendTo(client, 'paymentEscrow', 'withdraw');
  const [event] = eventsOf(ABIS.paymentEscrow, 'Withdrawn', tx.receipt.logs);
  return { ...tx, amount: event?.amount ?? 0n };
}

export function getDeposit(client: GlassboxClient, account: Address): Promise<bigint> {
  return readFrom(client, 'paymentEscrow', 'deposits', [account]);
}

/** What `provider` has redeemed from `client` so far (the cumulative amount). */
export function getRedeemed(
  client: GlassboxClient,
  params: { client: Address; provider: Address },
): Promise<bigint> {
  return readFrom(client, 'paymentEscrow', 'redeemed', [params.client, params.provider]);
}

export async function getWithdrawal(
  client: GlassboxClient,
  account: Address,
): Promise<{ amount: bigint; unlocksAtMs: number } | undefined> {
  const [amount, unlocksAt] = await readFrom(client, 'paymentEscrow', 'withdrawals', [account]);
  return amount === 0n ? undefined : { amount, unlocksAtMs: secondsToMs(unlocksAt) };
}
