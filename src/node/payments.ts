import { getAddress, type Address } from 'viem';
import { getDeposit, getRedeemed, type GlassboxClient } from '../chain/index.js';
import { voucherFromJson, type SignedVoucherJson } from '../protocol/api.js';
import { GlassboxError } from '../protocol/errors.js';
import { recoverVoucherSigner, type SignedVoucher, type VoucherDomain } from '../protocol/voucher.js';
import type { ClientAccount, NodeDb } from './db.js';

/*
 * Pay-after with bounded credit (src/protocol/api.ts): the node serves a client while
 *
 *     delivered - paid + reserved + price <= creditLimit
 *
 * where `delivered` is the sum of the prices of its receipts, `paid` what its best voucher covers,
 * and `reserved` the prices of its requests still running. A voucher covers its amount only as far
 * as the client's escrow can pay it (deposit plus what this provider already redeemed), so an
 * unfunded voucher buys no credit. That bound is read from the chain and reused until a voucher
 * asks for more than it.
 *
 * A voucher riding along with an inference request (`acceptVoucher(json, client)`) is checked and
 * counted at once but written to the database after the answer has left (`flush`, which the infer
 * route calls when its response is sent, and a timer otherwise): its own fsync'd transaction took
 * 0.5-2.5 ms of every request's latency. Nothing is risked by the delay: a voucher only grows what
 * the node may redeem, a node that crashes before the write merely holds the previous voucher (the
 * client's next request, or its settle, brings a newer one), and `delivered`, which bounds credit,
 * is written with each receipt. A voucher handed over on its own (POST /v1/vouchers) is written
 * before the call returns.
 */

export type Payments = {
  /** Checks a voucher (signature, client, provider) and keeps it if it is the best; returns the account. */
  acceptVoucher(json: SignedVoucherJson, client?: Address): Promise<ClientAccount>;
  /** What the account's best voucher pays for, as far as the escrow backs it. */
  paid(account: ClientAccount): Promise<bigint>;
  /** Reserves `price` of credit for one request; PAYMENT_REQUIRED with details.owed when it can't. */
  reserve(client: Address, price: bigint): Promise<() => void>;
  /** Writes the vouchers accepted with requests but not yet written; safe to call any time. */
  flush(): void;
};

export type PaymentsParameters = {
  readonly db: NodeDb;
  readonly chain: GlassboxClient;
  readonly provider: Address;
  readonly domain: VoucherDomain;
  readonly creditLimit: bigint;
  /** How long a read of a client's escrow backing is trusted. */
  readonly backingTtlMs?: number;
  /** The longest a voucher accepted with a request waits to be written when nobody calls `flush`. */
  readonly flushAfterMs?: number;
};

export function createPayments(params: PaymentsParameters): Payments {
  const { db, provider, creditLimit } = params;
  const reserved = new Map<Address, bigint>();
  const backing = new Map<Address, { amount: bigint; at: number }>();
  const ttl = params.backingTtlMs ?? 5_000;
  /** Per client, the best voucher accepted with a request and not yet in the database. */
  const unwritten = new Map<Address, SignedVoucher>();
  let timer: ReturnType<typeof setTimeout> | undefined;

  function flush(): void {
    clearTimeout(timer);
    timer = undefined;
    const vouchers = [...unwritten.values()];
    unwritten.clear();
    for (const v of vouchers) db.offerVoucher(v);
  }

  /** The account as the database has it, with a better unwritten voucher in place of its own. */
  function account(client: Address): ClientAccount {
    const stored = db.getAccount(client);
    const pending = unwritten.get(client);
    if (!pending || (stored.voucher && stored.voucher.voucher.amount >= pending.voucher.amount))
      return stored;
    return { ...stored, voucher: pending };
  }

  /** Deposit plus already redeemed: the most any voucher of `client` to us can pay in total. */
  async function backed(client: Address, want: bigint): Promise<bigint> {
    const hit = backing.get(client);
    if (hit && (hit.amount >= want || Date.now() - hit.at < 250) && Date.now() - hit.at < ttl)
      return hit.amount;
    const [deposit, redeemed] = await Promise.all([
      getDeposit(params.chain, client),
      getRedeemed(params.chain, { client, provider }),
    ]);
    const amount = deposit + redeemed;
    backing.set(client, { amount, at: Date.now() });
    return amount;
  }

  async function paid(account: ClientAccount): Promise<bigint> {
    const amount = account.voucher?.voucher.amount ?? 0n;
    if (amount === 0n) return 0n;
    const cap = await backed(account.client, amount);
    return amount < cap ? amount : cap;
  }

  async function acceptVoucher(json: SignedVoucherJson, client?: Address): Promise<ClientAccount> {
    const signed: SignedVoucher = voucherFromJson(json);
    const voucherClient = getAddress(signed.voucher.client);
    if (client !== undefined && voucherClient !== client)
      throw new GlassboxError(
        'VOUCHER_INVALID',
        `the voucher is from ${voucherClient}, not from the request's client ${client}`,
        { field: 'voucher.voucher.client' },
      );
    if (getAddress(signed.voucher.provider) !== provider)
      throw new GlassboxError(
        'VOUCHER_INVALID',
        `the voucher pays provider ${signed.voucher.provider}, not this provider ${provider}`,
        { field: 'voucher.voucher.provider' },
      );
    const held = account(voucherClient);
    // The voucher already held (a retried request): checked when it came, nothing changes.
    if (held.voucher?.signature === signed.signature && held.voucher.voucher.amount === signed.voucher.amount)
      return held;
    const signer = await recoverVoucherSigner(signed, params.domain);
    if (signer !== voucherClient)
      throw new GlassboxError(
        'SIGNATURE_INVALID',
        `the voucher is signed by ${signer}, not by its client ${voucherClient} (or for another escrow or chain)`,
        { field: 'voucher.signature', details: { signer, client: voucherClient } },
      );
    const voucher: SignedVoucher = {
      voucher: { client: voucherClient, provider, amount: signed.voucher.amount },
      signature: signed.signature,
    };
    if (client === undefined) {
      flush();
      return db.offerVoucher(voucher);
    }
    // A lower voucher than the one held is stale (requests race), not an error: it is ignored.
    if (held.voucher && held.voucher.voucher.amount >= voucher.voucher.amount) return held;
    unwritten.set(voucherClient, voucher);
    timer ??= setTimeout(() => {
      try {
        flush();
      } catch {
        // the database closed with the node: the client still holds the voucher
      }
    }, params.flushAfterMs ?? 1_000);
    timer.unref?.();
    return { ...held, voucher };
  }

  async function reserve(client: Address, price: bigint): Promise<() => void> {
    const held = account(client);
    const { delivered } = held;
    const covered = await paid(held);
    const pending = reserved.get(client) ?? 0n;
    const owed = delivered - covered;
    if (owed + pending + price > creditLimit)
      throw new GlassboxError(
        'PAYMENT_REQUIRED',
        `client ${client} owes ${owed} (credit limit ${creditLimit}); send a voucher for at least ${delivered + pending + price - creditLimit}`,
        {
          field: 'voucher',
          details: {
            owed: owed.toString(),
            delivered: delivered.toString(),
            paid: covered.toString(),
            creditLimit: creditLimit.toString(),
          },
        },
      );
    reserved.set(client, pending + price);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (reserved.get(client) ?? 0n) - price;
      if (left === 0n) reserved.delete(client);
      else reserved.set(client, left);
    };
  }

  return { acceptVoucher, paid, reserve, flush };
}
