import { getAddress, isAddressEqual, type Address } from 'viem';
import { isGlassboxError } from '../protocol/errors.js';
import { signVoucher, type SignedVoucher } from '../protocol/voucher.js';
import type { Client } from './client.js';
import { postVoucher, type ProviderRef } from './transport.js';
import type { CheckName, ReceiptReport } from './verify.js';

/*
 * Payment by cumulative vouchers (docs/protocol.md, Vouchers; api.ts, pay-after with bounded credit). The
 * amount a client owes a provider is the sum of the prices of the receipts it received from that
 * provider and accepts as genuine (`chargeable`); the latest voucher for that total rides along
 * with every request, and `settle` hands it over explicitly. So what a provider can redeem equals
 * what the client was charged, to the base unit, and a client never pays for an answer it did not
 * receive.
 *
 * A provider counts every answer it sent as delivered, so the client pays for every genuine answer
 * it received, not only the one it used (audit M-4): the losing request of a hedge (the provider
 * did the work; that is what hedging costs), and an answer whose checks all passed or could not be
 * done (a chain read that failed is not the provider's fault). What it does not pay for: a receipt
 * that is not the provider's, for this request and within price; an answer any check finds wrong
 * (a wrong hash, model, runtime or timestamp: a provider could otherwise be paid for replayed or
 * cheaper work that can't be proven wrong on chain); and an answer the client's own comparison
 * shows wrong (local re-execution disagrees, or a quorum's minority: audit L-6), which is disputed
 * instead.
 */

/** The checks a receipt must surely pass to be paid for: it is the provider's, for this request, within price. */
const PAID_CHECKS: readonly CheckName[] = ['signature', 'request', 'client', 'price'];

/** Whether the client pays for this answer of `provider` (see above). */
export function chargeable(report: ReceiptReport, provider: Address): boolean {
  const passed = (name: CheckName) => report.checks.find((c) => c.check === name)?.ok === true;
  return (
    isAddressEqual(report.receipt.receipt.provider, provider) &&
    PAID_CHECKS.every(passed) &&
    report.checks.every((c) => c.ok || c.unknown === true)
  );
}

export type PaymentAccount = {
  /** Sum of the prices of the receipts received from this provider that the client pays for. */
  charged: bigint;
  receipts: number;
  /** The latest signed voucher (for `charged` once signed). */
  latest: SignedVoucher | undefined;
  /** The amount the provider last acknowledged (POST /v1/vouchers). */
  acknowledged: bigint;
  endpoint: string;
};

function account(client: Client, provider: ProviderRef): PaymentAccount {
  const key = getAddress(provider.address);
  let a = client.state.payments.get(key);
  if (!a) {
    a = { charged: 0n, receipts: 0, latest: undefined, acknowledged: 0n, endpoint: provider.endpoint };
    client.state.payments.set(key, a);
  }
  a.endpoint = provider.endpoint;
  return a;
}

/** Adds a receipt's price to what the client owes `provider`. */
export function recordCharge(client: Client, provider: ProviderRef, price: bigint): void {
  const a = account(client, provider);
  a.charged += price;
  a.receipts++;
}

/** The voucher for everything owed to `provider` so far (undefined while nothing is owed). */
export async function currentVoucher(
  client: Client,
  provider: ProviderRef,
): Promise<SignedVoucher | undefined> {
  const a = account(client, provider);
  if (a.charged === 0n) return undefined;
  if (a.latest && a.latest.voucher.amount === a.charged) return a.latest;
  const amount = a.charged;
  const signed = await signVoucher(
    client.account,
    { client: client.address, provider: getAddress(provider.address), amount },
    { chainId: client.chainId, verifyingContract: client.deployment.contracts.paymentEscrow },
  );
  // Concurrent requests may sign in any order; keep the largest.
  if (!a.latest || a.latest.voucher.amount < amount) a.latest = signed;
  return a.latest;
}

export type ChargedReturnType = Record<Address, { readonly charged: bigint; readonly receipts: number }>;

/** What this client owes each provider: the sums of the prices of the receipts it pays for. */
export function charged(client: Client): ChargedReturnType {
  const out: ChargedReturnType = {};
  for (const [provider, a] of client.state.payments)
    if (a.receipts > 0) out[provider] = { charged: a.charged, receipts: a.receipts };
  return out;
}

export type SettleParameters = {
  /** Only these providers (default: every provider owed anything). */
  readonly providers?: readonly Address[];
  readonly timeoutMs?: number;
};

export type SettleResult = {
  readonly provider: Address;
  readonly amount: bigint;
  readonly voucher: SignedVoucher;
  /** True when the provider acknowledged it; false with `error` when it could not be reached. */
  readonly delivered: boolean;
  readonly error?: string;
};

/**
 * Sends each provider the voucher for everything owed so far (POST /v1/vouchers), once the hedged
 * requests still running have settled (their answers are paid for too). A provider that cannot be
 * reached keeps its voucher: it rides along with the next request, and `settle` can be called
 * again. Returns the vouchers, which a provider could also be handed out of band.
 */
export async function settle(client: Client, params: SettleParameters = {}): Promise<SettleResult[]> {
  await Promise.all([...client.state.background].map((request) => request.settled));
  return sendVouchers(client, params);
}

/** `settle` without waiting for background requests: what a request that got 402 does (infer.ts). */
export async function sendVouchers(client: Client, params: SettleParameters = {}): Promise<SettleResult[]> {
  const wanted = params.providers?.map((p) => getAddress(p));
  const targets = [...client.state.payments.entries()].filter(
    ([p, a]) => a.charged > 0n && (wanted === undefined || wanted.includes(p)),
  );
  return Promise.all(
    targets.map(async ([provider, a]): Promise<SettleResult> => {
      const ref = { address: provider, endpoint: a.endpoint };
      const voucher = (await currentVoucher(client, ref))!;
      try {
        await postVoucher(
          client,
          ref,
          voucher,
          params.timeoutMs === undefined ? {} : { timeoutMs: params.timeoutMs },
        );
        if (voucher.voucher.amount > a.acknowledged) a.acknowledged = voucher.voucher.amount;
        return { provider, amount: voucher.voucher.amount, voucher, delivered: true };
      } catch (error) {
        return {
          provider,
          amount: voucher.voucher.amount,
          voucher,
          delivered: false,
          error: isGlassboxError(error) ? error.shortMessage : String(error),
        };
      }
    }),
  );
}
