import { hashTypedData, type Address, type Hex, type LocalAccount } from 'viem';
import { glassboxDomain, type GlassboxDomain } from './domain.js';
import { flatStruct, typedDataDigest } from './eip712.js';
import { GlassboxError } from './errors.js';
import { recoverDigestSigner, signDigestWith } from './secp256k1.js';

/**
 * Payment is a cumulative voucher (docs/protocol.md, Vouchers): the client signs the total it owes one
 * provider so far; the provider redeems the latest whenever it likes and is paid only the increase
 * over what it already redeemed, so replaying an old voucher pays nothing. EIP-712 under the
 * domain `Glassbox` v1 whose verifying contract is the PaymentEscrow.
 */
export const VOUCHER_TYPES = {
  Voucher: [
    { name: 'client', type: 'address' },
    { name: 'provider', type: 'address' },
    { name: 'amount', type: 'uint256' },
  ],
} as const;

export type Voucher = {
  readonly client: Address;
  readonly provider: Address;
  /** Everything the client owes this provider so far, in token base units. */
  readonly amount: bigint;
};

export type SignedVoucher = { readonly voucher: Voucher; readonly signature: Hex };

export type VoucherDomain = GlassboxDomain;

/** The domain of vouchers: verifying contract = the PaymentEscrow. */
export const voucherDomain = glassboxDomain;

// viem's EIP-712 hashing, field by field (src/protocol/eip712.ts; same bytes).
const voucherStruct = flatStruct('Voucher', VOUCHER_TYPES.Voucher);

/** The EIP-712 digest that is signed. */
export function voucherDigest(voucher: Voucher, domain: VoucherDomain): Hex {
  const hash = voucherStruct.hash(voucher);
  if (hash) return typedDataDigest(domain, hash);
  return hashTypedData({
    domain: voucherDomain(domain),
    types: VOUCHER_TYPES,
    primaryType: 'Voucher',
    message: voucher,
  });
}

export async function signVoucher(
  account: LocalAccount,
  voucher: Voucher,
  domain: VoucherDomain,
): Promise<SignedVoucher> {
  const signature =
    (await signDigestWith(account, voucherDigest(voucher, domain))) ??
    (await account.signTypedData({
      domain: voucherDomain(domain),
      types: VOUCHER_TYPES,
      primaryType: 'Voucher',
      message: voucher,
    }));
  return { voucher, signature };
}

export async function recoverVoucherSigner(signed: SignedVoucher, domain: VoucherDomain): Promise<Address> {
  try {
    return await recoverDigestSigner(voucherDigest(signed.voucher, domain), signed.signature);
  } catch (cause) {
    throw new GlassboxError('SIGNATURE_INVALID', 'the voucher signature is malformed', {
      field: 'signature',
      cause,
    });
  }
}
