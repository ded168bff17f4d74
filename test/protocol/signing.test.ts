import fc from 'fast-check';
import { getAddress, hashStruct, hashTypedData, recoverAddress, toHex, type Address, type Hex } from 'viem';
import { privateKeyToAccount, sign } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import { glassboxDomain } from '../../src/protocol/domain.js';
import {
  RECEIPT_TYPES,
  receiptDigest,
  receiptHash,
  recoverReceiptSigner,
  signReceipt,
  type Receipt,
} from '../../src/protocol/receipt.js';
import {
  privateKeyToSigner,
  recoverDigestSigner,
  SECP256K1_N,
  secp256k1Backend,
  signatureProblem,
  signDigest,
} from '../../src/protocol/secp256k1.js';
import { VOUCHER_TYPES, signVoucher, voucherDigest } from '../../src/protocol/voucher.js';
import { nonCanonical } from '../support/signatures.js';

/*
 * The fast paths (native secp256k1, field-by-field EIP-712 hashing) must give viem's bytes exactly:
 * the same digests, signatures and recovered addresses, and a failure wherever viem fails.
 */

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => toHex(b));
/** Addresses as lowercase, checksummed, or (mostly invalid) arbitrary mixed case. */
const address = fc
  .tuple(fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.constantFrom('lower', 'checksum', 'upper'))
  .map(([b, kind]) => {
    const hex = toHex(b);
    if (kind === 'checksum') return getAddress(hex);
    if (kind === 'upper') return `0x${hex.slice(2).toUpperCase()}` as Address;
    return hex as Address;
  });
const goodAddress = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => getAddress(toHex(b)));
const privateKey = fc
  .bigInt({ min: 1n, max: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140n })
  .map((k) => toHex(k, { size: 32 }));
const uint = (bits: number) => fc.bigInt({ min: 0n, max: 2n ** BigInt(bits) - 1n });
/** Mostly in range, sometimes just past it or negative (viem refuses those). */
const maybeUint = (bits: number) =>
  fc.oneof(
    { weight: 8, arbitrary: uint(bits) },
    { weight: 1, arbitrary: fc.constantFrom(2n ** BigInt(bits), -1n) },
  );

const receiptArb = (addr: fc.Arbitrary<Address>, price = maybeUint(256), time = maybeUint(64)) =>
  fc.record<Receipt>({
    requestId: bytes32,
    provider: addr,
    client: addr,
    model: bytes32,
    inputHash: bytes32,
    outputHash: bytes32,
    paramsHash: bytes32,
    runtime: bytes32,
    traceRoot: bytes32,
    price,
    timestamp: time,
  });
const domainArb = fc.record({
  chainId: fc.integer({ min: 1, max: 2 ** 31 }),
  verifyingContract: goodAddress,
});

/** What `f` returns, or 'throws'. */
function outcome<T>(f: () => T): T | 'throws' {
  try {
    return f();
  } catch {
    return 'throws';
  }
}
async function outcomeAsync<T>(f: () => Promise<T>): Promise<T | 'throws'> {
  try {
    return await f();
  } catch {
    return 'throws';
  }
}

describe('EIP-712 hashing field by field', () => {
  it("gives viem's receipt struct hash and digest, and fails where viem fails", () => {
    fc.assert(
      fc.property(receiptArb(address), domainArb, (receipt, domain) => {
        const viemHash = outcome(() =>
          hashStruct({ data: receipt, primaryType: 'Receipt', types: RECEIPT_TYPES }),
        );
        const viemDigest = outcome(() =>
          hashTypedData({
            domain: glassboxDomain(domain),
            types: RECEIPT_TYPES,
            primaryType: 'Receipt',
            message: receipt,
          }),
        );
        expect(outcome(() => receiptHash(receipt))).toBe(viemHash);
        expect(outcome(() => receiptDigest(receipt, domain))).toBe(viemDigest);
      }),
      { numRuns: 300 },
    );
  });

  it("gives viem's voucher digest", () => {
    fc.assert(
      fc.property(address, address, maybeUint(256), domainArb, (client, provider, amount, domain) => {
        const voucher = { client, provider, amount };
        const viemDigest = outcome(() =>
          hashTypedData({
            domain: glassboxDomain(domain),
            types: VOUCHER_TYPES,
            primaryType: 'Voucher',
            message: voucher,
          }),
        );
        expect(outcome(() => voucherDigest(voucher, domain))).toBe(viemDigest);
      }),
      { numRuns: 300 },
    );
  });
});

describe(`secp256k1 (${secp256k1Backend})`, () => {
  it('loads the native binding where the secp256k1 package ships one', () => {
    const shipped = ['linux-x64', 'darwin-arm64', 'win32-x64'].includes(
      `${process.platform}-${process.arch}`,
    );
    if (shipped && process.env.GLASSBOX_SECP256K1 !== 'js') expect(secp256k1Backend).toBe('native');
  });

  it("signs digests with viem's bytes (RFC 6979, low s, v = 27 + parity)", async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, bytes32, async (key, digest) => {
        expect(await signDigest(key, digest)).toBe(await sign({ hash: digest, privateKey: key, to: 'hex' }));
      }),
      { numRuns: 200 },
    );
  });

  it("recovers viem's address from valid signatures, v as 27/28 or as 0/1", async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, bytes32, fc.boolean(), async (key, digest, parityByte) => {
        const signed = await sign({ hash: digest, privateKey: key, to: 'hex' });
        const v = parseInt(signed.slice(130), 16);
        const signature = parityByte ? (`${signed.slice(0, 130)}0${v - 27}` as Hex) : signed;
        const recovered = await recoverDigestSigner(digest, signature);
        expect(recovered).toBe(await recoverAddress({ hash: digest, signature }));
        expect(recovered).toBe(privateKeyToAccount(key).address);
      }),
      { numRuns: 200 },
    );
  });

  it('recovers what viem recovers from arbitrary bytes, and fails where viem fails', async () => {
    const v = fc.constantFrom(0, 1, 27, 28, 2, 29, 255);
    const scalar = fc.oneof(
      bytes32,
      fc.constantFrom(
        toHex(0n, { size: 32 }),
        toHex(2n ** 256n - 1n, { size: 32 }),
        '0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141' as Hex, // the group order
      ),
    );
    await fc.assert(
      fc.asyncProperty(bytes32, scalar, scalar, v, async (digest, r, s, vByte) => {
        const signature = `${r}${s.slice(2)}${vByte.toString(16).padStart(2, '0')}` as Hex;
        expect(await outcomeAsync(() => recoverDigestSigner(digest, signature))).toBe(
          await outcomeAsync(() => recoverAddress({ hash: digest, signature })),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("privateKeyToSigner signs typed data and messages with viem's bytes", async () => {
    await fc.assert(
      fc.asyncProperty(
        privateKey,
        receiptArb(goodAddress, uint(256), uint(64)),
        domainArb,
        fc.string(),
        async (key, receipt, domain, message) => {
          const fast = privateKeyToSigner(key);
          const slow = privateKeyToAccount(key);
          expect(fast.address).toBe(slow.address);
          const typed = {
            domain: glassboxDomain(domain),
            types: RECEIPT_TYPES,
            primaryType: 'Receipt' as const,
            message: receipt,
          };
          expect(await fast.signTypedData(typed)).toBe(await slow.signTypedData(typed));
          expect(await fast.signMessage({ message })).toBe(await slow.signMessage({ message }));
          expect((await signReceipt(fast, receipt, domain)).signature).toBe(await slow.signTypedData(typed));
          expect(await recoverReceiptSigner(await signReceipt(slow, receipt, domain), domain)).toBe(
            slow.address,
          );
          const voucher = { client: slow.address, provider: receipt.provider, amount: receipt.price };
          expect((await signVoucher(fast, voucher, domain)).signature).toBe(
            await slow.signTypedData({
              domain: glassboxDomain(domain),
              types: VOUCHER_TYPES,
              primaryType: 'Voucher',
              message: voucher,
            }),
          );
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('H-1 non-canonical signatures: signatureProblem refuses the forms ECDSA.recover refuses', () => {
  const n = SECP256K1_N;
  const join = (r: bigint, s: bigint, v: number) =>
    `0x${toHex(r, { size: 32 }).slice(2)}${toHex(s, { size: 32 }).slice(2)}${v.toString(16).padStart(2, '0')}` as Hex;

  it('passes every signature viem and the native curve produce', async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, bytes32, async (key, digest) => {
        expect(signatureProblem(await sign({ hash: digest, privateKey: key, to: 'hex' }))).toBeUndefined();
        expect(signatureProblem(await signDigest(key, digest))).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('refuses the malleable twins that still recover to the signer off chain: v 0/1, high s', async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, bytes32, async (key, digest) => {
        const signed = await sign({ hash: digest, privateKey: key, to: 'hex' });
        const signer = privateKeyToAccount(key).address;
        const { parity, highS } = nonCanonical(signed);
        for (const twin of [parity, highS]) {
          // viem (and so a node without this check) recovers the signer from both...
          expect(await recoverAddress({ hash: digest, signature: twin })).toBe(signer);
          expect(await recoverDigestSigner(digest, twin)).toBe(signer);
        }
        // ...which the chain refuses
        expect(signatureProblem(parity)).toMatch(/v is [01], not 27 or 28/);
        expect(signatureProblem(highS)).toMatch(/upper half/);
      }),
      { numRuns: 100 },
    );
  });

  it('refuses other lengths, zero or out-of-range r and s, and non-hex', () => {
    const good = join(1n, 1n, 27);
    expect(signatureProblem(good)).toBeUndefined();
    expect(signatureProblem(join(n - 1n, n / 2n, 28))).toBeUndefined();
    expect(signatureProblem(join(1n, n / 2n + 1n, 27))).toMatch(/upper half/);
    expect(signatureProblem(join(0n, 1n, 27))).toMatch(/r is not/);
    expect(signatureProblem(join(n, 1n, 27))).toMatch(/r is not/);
    expect(signatureProblem(join(1n, 0n, 27))).toMatch(/s is zero/);
    expect(signatureProblem(join(1n, 1n, 29))).toMatch(/v is 29/);
    expect(signatureProblem(good.slice(0, 130))).toMatch(/64 bytes, not 65/); // EIP-2098 compact form
    expect(signatureProblem(`${good}00`)).toMatch(/66 bytes/);
    expect(signatureProblem('0x1234')).toMatch(/2 bytes/);
    expect(signatureProblem(`0x${'zz'.repeat(65)}`)).toMatch(/not 0x-hex/);
    expect(signatureProblem(good.slice(0, 131))).toMatch(/not 0x-hex/);
  });
});
