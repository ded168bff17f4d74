import fc from 'fast-check';
import { toHex, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  receiptDigest,
  recoverReceiptSigner,
  signReceipt,
  signedReceiptFromJson,
  signedReceiptToJson,
  type Receipt,
} from '../../src/protocol/receipt.js';
import { recoverVoucherSigner, signVoucher } from '../../src/protocol/voucher.js';

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => toHex(b));
const address = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => toHex(b) as Address);
/** Private keys in the secp256k1 range (never zero, below the group order). */
const privateKey = fc
  .bigInt({ min: 1n, max: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140n })
  .map((k) => toHex(k, { size: 32 }));

const receiptArb: fc.Arbitrary<Receipt> = fc.record({
  requestId: bytes32,
  provider: address,
  client: address,
  model: bytes32,
  inputHash: bytes32,
  outputHash: bytes32,
  paramsHash: bytes32,
  runtime: bytes32,
  traceRoot: bytes32,
  price: fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }),
  timestamp: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
});

const domainArb = fc.record({ chainId: fc.integer({ min: 1, max: 2 ** 31 }), verifyingContract: address });

describe('receipts', () => {
  it('with random contents sign and recover to the signer', async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, receiptArb, domainArb, async (key, receipt, domain) => {
        const account = privateKeyToAccount(key);
        const signed = await signReceipt(account, receipt, domain);
        expect(await recoverReceiptSigner(signed, domain)).toBe(account.address);
      }),
      { numRuns: 100 },
    );
  });

  it('recover to someone else when any field, the chain or the contract changes', async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, receiptArb, domainArb, bytes32, async (key, receipt, domain, other) => {
        const account = privateKeyToAccount(key);
        const signed = await signReceipt(account, receipt, domain);
        fc.pre(other !== receipt.outputHash);
        const forged = { ...signed, receipt: { ...receipt, outputHash: other } };
        expect(await recoverReceiptSigner(forged, domain)).not.toBe(account.address);
        const otherChain = { ...domain, chainId: domain.chainId + 1 };
        expect(await recoverReceiptSigner(signed, otherChain)).not.toBe(account.address);
        expect(receiptDigest({ ...receipt, price: receipt.price ^ 1n }, domain)).not.toBe(
          receiptDigest(receipt, domain),
        );
      }),
      { numRuns: 30 },
    );
  });

  it('refuses a malformed signature with SIGNATURE_INVALID', async () => {
    const receipt = fc.sample(receiptArb, 1)[0]!;
    const domain = { chainId: 1, verifyingContract: receipt.provider };
    await expect(recoverReceiptSigner({ receipt, signature: '0x1234' as Hex }, domain)).rejects.toMatchObject(
      {
        code: 'SIGNATURE_INVALID',
      },
    );
  });

  it('round-trip through JSON, and malformed JSON names the field', async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, receiptArb, async (key, receipt) => {
        const signed = await signReceipt(privateKeyToAccount(key), receipt, {
          chainId: 1,
          verifyingContract: receipt.client,
        });
        expect(signedReceiptFromJson(JSON.parse(JSON.stringify(signedReceiptToJson(signed))))).toEqual(
          signed,
        );
      }),
      { numRuns: 20 },
    );
    const json = signedReceiptToJson({ receipt: fc.sample(receiptArb, 1)[0]!, signature: '0x00' });
    expect(() => signedReceiptFromJson({ ...json, receipt: { ...json.receipt, inputHash: '0x12' } })).toThrow(
      expect.objectContaining({ code: 'RECEIPT_INVALID', field: 'receipt.inputHash' }),
    );
  });
});

describe('vouchers', () => {
  it('sign and recover to the client', async () => {
    await fc.assert(
      fc.asyncProperty(
        privateKey,
        address,
        fc.bigInt({ min: 0n, max: 2n ** 128n }),
        domainArb,
        async (key, provider, amount, domain) => {
          const account = privateKeyToAccount(key);
          const signed = await signVoucher(account, { client: account.address, provider, amount }, domain);
          expect(await recoverVoucherSigner(signed, domain)).toBe(account.address);
          const raised = { ...signed, voucher: { ...signed.voucher, amount: amount + 1n } };
          expect(await recoverVoucherSigner(raised, domain)).not.toBe(account.address);
        },
      ),
      { numRuns: 30 },
    );
  });
});
