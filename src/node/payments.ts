import { getAddress, type Address } from 'viem';
import { getDeposit, getRedeemed, getWithdrawal, type GlassboxClient } from '../chain/index.js';
import { voucherFromJson, type SignedVoucherJson } from '../protocol/api.js';
import { GlassboxError } from '../protocol/errors.js';
import { signatureProblem } from '../protocol/secp256k1.js';
import { recoverVoucherSigner, type SignedVoucher, type VoucherDomain } from '../protocol/voucher.js';
import type { ClientAccount, NodeDb } from './db.js';

/*
 * Pay-after with bounded credit (src/protocol/api.ts), extended only to clients with money behind
 * them. The client is proven by its request signature before this is asked (src/node/infer.ts).
 * The node serves a client while both
 *
 *   (a) delivered - paid + reserved + price <= creditLimit
 *   (b) delivered - redeemed + reserved + price <= deposit - withdrawing
 *
 * where `delivered` is the sum of the prices of its receipts, `paid` what its best voucher covers,
 * `reserved` the prices of its requests still running, and from the escrow: `redeemed` what this
 * provider already took of the client's deposit (it left the deposit, so it is not counted against
 * it again), `deposit` what is left, and `withdrawing` the client's pending withdrawal. (a) bounds
 * what the node serves before it holds a voucher for it; (b) bounds what it serves to what the
 * deposit can still pay once the client's withdrawal completes: a deposit on its way out backs
 * nothing (audit H-2), and an unfunded address gets nothing (audit H-3). A voucher covers its amount
 * only as far as the escrow can pay it (deposit plus what this provider already redeemed). The
 * escrow is read from the chain and reused for a few seconds, and read again when a check would
 * fail on a read older than a quarter second (the client may just have deposited).
 *
 * The deposit is shared by every provider the client uses; (b) does not see what the others are
 * owed. The redeemer must redeem within the withdrawal delay for (b) to hold (src/node/node.ts
 * refuses a redemption interval that can't).
 *
 * A voucher riding along with an inference request (`acceptVoucher(json, client)`) is checked and
 * counted at once but written later: with the next receipt, in its transaction (`takeVouchers`,
 * src/node/group-commit.ts), or (`flush`), for a request that ends without a receipt, when its
 * response is sent (the infer route) or on a timer. Its own fsync'd transaction took 0.5-2.5 ms of
 * every request's latency. Nothing is risked by the delay: a voucher only grows what
 * the node may redeem, a node that crashes before the write merely holds the previous voucher (the
 * client's next request, or its settle, brings a newer one), and `delivered`, which bounds credit,
 * is written with each receipt. A voucher handed over on its own (POST /v1/vouchers) is written
 * before the call returns. A voucher whose signature the chain would refuse (not canonical: audit
 * H-1) is refused here, or it would buy service that can never be redeemed.
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
  /** Hands over (and forgets) the vouchers accepted with requests but not yet written, for the caller to write. */
  takeVouchers(): SignedVoucher[];
};

export type PaymentsParameters = {
  readonly db: NodeDb;
  readonly chain: GlassboxClient;
  readonly provider: Address;
  readonly domain: VoucherDomain;
  readonly creditLimit: bigint;
  /** How long a read of a client's escrow (deposit, withdrawal, redeemed) is trusted. */
  readonly escrowTtlMs?: number;
  /** The longest a voucher accepted with a request waits to be written when nobody calls `flush`. */
  readonly flushAfterMs?: number;
};

/** A client's escrow as read from the chain, at `at` (ms). */
type Escrow = {
  readonly deposit: bigint;
  /** The pending withdrawal's amount (0 when none). */
  readonly withdrawing: bigint;
  /** What this provider has redeemed from the client so far. */
  readonly redeemed: bigint;
  readonly at: number;
};

export function createPayments(params: PaymentsParameters): Payments {
  const { db, provider, creditLimit } = params;
  const reserved = new Map<Address, bigint>();
  const escrows = new Map<Address, Escrow>();
  const ttl = params.escrowTtlMs ?? 5_000;
  /** Per client, the best voucher accepted with a request and not yet in the database. */
  const unwritten = new Map<Address, SignedVoucher>();
  let timer: ReturnType<typeof setTimeout> | undefined;

  function takeVouchers(): SignedVoucher[] {
    clearTimeout(timer);
    timer = undefined;
    const vouchers = [...unwritten.values()];
    unwritten.clear();
    return vouchers;
  }

  function flush(): void {
    for (const v of takeVouchers()) db.offerVoucher(v);
  }

  /** The account as the database has it, with a better unwritten voucher in place of its own. */
  function account(client: Address): ClientAccount {
    const stored = db.getAccount(client);
    const pending = unwritten.get(client);
    if (!pending || (stored.voucher && stored.voucher.voucher.amount >= pending.voucher.amount))
      return stored;
    return { ...stored, voucher: pending };
  }

  /**
   * The client's escrow as last read, or read now when that is older than the TTL, or when
   * `enough` says it falls short and it is older than a quarter second (a deposit may have come).
   */
  async function escrowOf(client: Address, enough: (e: Escrow) => boolean): Promise<Escrow> {
    const hit = escrows.get(client);
    const age = hit ? Date.now() - hit.at : Infinity;
    if (hit && age < ttl && (age < 250 || enough(hit))) return hit;
    const [deposit, withdrawal, redeemed] = await Promise.all([
      getDeposit(params.chain, client),
      getWithdrawal(params.chain, client),
      getRedeemed(params.chain, { client, provider }),
    ]);
    const read: Escrow = { deposit, withdrawing: withdrawal?.amount ?? 0n, redeemed, at: Date.now() };
    escrows.set(client, read);
    return read;
  }

  /** What a voucher for `amount` can pay: deposit plus what was already redeemed. */
  const payable = (amount: bigint, e: Escrow) =>
    amount < e.deposit + e.redeemed ? amount : e.deposit + e.redeemed;

  async function paid(account: ClientAccount): Promise<bigint> {
    const amount = account.voucher?.voucher.amount ?? 0n;
    if (amount === 0n) return 0n;
    return payable(amount, await escrowOf(account.client, (e) => payable(amount, e) === amount));
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
    const signer = await voucherSigner(signed);
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
    const held = account(voucherClient);
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

  /**
   * Who signed the voucher, once its signature is one the escrow will accept (canonical) and the
   * chain's: SIGNATURE_INVALID naming `voucher.signature` otherwise. The voucher already held (a
   * retried request) was checked when it came, and is not recovered again.
   */
  async function voucherSigner(signed: SignedVoucher): Promise<Address> {
    const problem = signatureProblem(signed.signature);
    if (problem)
      throw new GlassboxError('SIGNATURE_INVALID', `the voucher signature is not canonical: ${problem}`, {
        field: 'voucher.signature',
      });
    const held = account(getAddress(signed.voucher.client)).voucher;
    if (held?.signature === signed.signature && held.voucher.amount === signed.voucher.amount)
      return held.voucher.client;
    try {
      return await recoverVoucherSigner(signed, params.domain);
    } catch (cause) {
      throw new GlassboxError('SIGNATURE_INVALID', 'the voucher signature does not recover', {
        field: 'voucher.signature',
        cause,
      });
    }
  }

  /** Why `price` more can't be served to the client now, or undefined when it can. */
  function refusal(client: Address, held: ClientAccount, more: bigint, e: Escrow): GlassboxError | undefined {
    const facts = {
      delivered: held.delivered.toString(),
      redeemed: e.redeemed.toString(),
      deposit: e.deposit.toString(),
      withdrawing: e.withdrawing.toString(),
      creditLimit: creditLimit.toString(),
    };
    // (b): what the deposit must still pay for, against what is left of it after the withdrawal.
    const backing = e.deposit > e.withdrawing ? e.deposit - e.withdrawing : 0n;
    const unredeemed = held.delivered - e.redeemed + more;
    if (unredeemed > backing)
      return new GlassboxError(
        'PAYMENT_REQUIRED',
        backing === 0n
          ? `client ${client} has no deposit in the escrow${e.withdrawing > 0n ? ' that is not being withdrawn' : ''}: it must deposit to the PaymentEscrow before it is served`
          : `client ${client}'s deposit backs ${backing} (deposit ${e.deposit}, withdrawing ${e.withdrawing}), less than the ${unredeemed} it would owe this provider: it must deposit more`,
        { field: 'client', details: { ...facts, backing: backing.toString() } },
      );
    // (a): what the node serves before it holds a voucher for it.
    const covered = payable(held.voucher?.voucher.amount ?? 0n, e);
    const owed = held.delivered - covered;
    if (owed + more > creditLimit)
      return new GlassboxError(
        'PAYMENT_REQUIRED',
        `client ${client} owes ${owed} (credit limit ${creditLimit}); send a voucher for at least ${held.delivered + more - creditLimit}`,
        { field: 'voucher', details: { ...facts, owed: owed.toString(), paid: covered.toString() } },
      );
    return undefined;
  }

  async function reserve(client: Address, price: bigint): Promise<() => void> {
    const before = account(client);
    const e = await escrowOf(
      client,
      (read) => refusal(client, before, (reserved.get(client) ?? 0n) + price, read) === undefined,
    );
    // Read again after the await: concurrent requests of this client may have reserved meanwhile,
    // and checking and reserving with nothing awaited between them is what keeps them from all
    // passing as if each were alone.
    const pending = reserved.get(client) ?? 0n;
    const refused = refusal(client, account(client), pending + price, e);
    if (refused) throw refused;
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

  return { acceptVoucher, paid, reserve, flush, takeVouchers };
}
