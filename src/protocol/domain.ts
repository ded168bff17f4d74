import type { Address, TypedDataDomain } from 'viem';

/** Where a Glassbox typed message is valid: a chain, and the contract that checks that kind of message. */
export type GlassboxDomain = { readonly chainId: number; readonly verifyingContract: Address };

/**
 * The EIP-712 domain of every Glassbox message (`Glassbox` v1). Receipts name the ReceiptLedger and
 * vouchers the PaymentEscrow, so a signature over one can never pass for the other.
 */
export function glassboxDomain({ chainId, verifyingContract }: GlassboxDomain): TypedDataDomain {
  return { name: 'Glassbox', version: '1', chainId, verifyingContract };
}
