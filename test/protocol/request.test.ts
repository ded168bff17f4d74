import fc from 'fast-check';
import { getAddress, hashTypedData, toHex, type Address } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import { glassboxDomain } from '../../src/protocol/domain.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { modelDigest, modelIdFromDigest } from '../../src/protocol/manifest.js';
import {
  INFER_REQUEST_TYPES,
  requestDigest,
  requestMessage,
  signRequest,
  verifyRequestSignature,
  type InferRequestMessage,
} from '../../src/protocol/request.js';
import { privateKeyToSigner, SECP256K1_N } from '../../src/protocol/secp256k1.js';
import { nonCanonical } from '../support/signatures.js';

/*
 * The client's signature over an inference request (audit H-3): typed data as viem hashes it, and a
 * verification that names the field `signature` whenever the request is not its client's.
 */

const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => toHex(b));
const goodAddress = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => getAddress(toHex(b)));
const privateKey = fc.bigInt({ min: 1n, max: SECP256K1_N - 1n }).map((k) => toHex(k, { size: 32 }));
const domainArb = fc.record({
  chainId: fc.integer({ min: 1, max: 2 ** 31 }),
  verifyingContract: goodAddress,
});
const messageArb = (client: fc.Arbitrary<Address>) =>
  fc.record<InferRequestMessage>({
    requestId: bytes32,
    client,
    provider: goodAddress,
    model: bytes32,
    inputHash: bytes32,
    maxPrice: fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }),
    trace: fc.boolean(),
  });

const DOMAIN = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' as Address };
const MODEL = modelIdFromDigest(`0x${'aa'.repeat(32)}`);

describe('signed inference requests', () => {
  it("hash field by field to viem's EIP-712 digest of InferRequest under the receipts' domain", () => {
    fc.assert(
      fc.property(messageArb(goodAddress), domainArb, (message, domain) => {
        expect(requestDigest(message, domain)).toBe(
          hashTypedData({
            domain: glassboxDomain(domain),
            types: INFER_REQUEST_TYPES,
            primaryType: 'InferRequest',
            message,
          }),
        );
      }),
      { numRuns: 300 },
    );
    // the type string, byte for byte (docs/protocol.md)
    expect(
      `InferRequest(${INFER_REQUEST_TYPES.InferRequest.map((f) => `${f.type} ${f.name}`).join(',')})`,
    ).toBe(
      'InferRequest(bytes32 requestId,address client,address provider,bytes32 model,bytes32 inputHash,uint256 maxPrice,bool trace)',
    );
  });

  it("are signed with viem's bytes and verify to their client", async () => {
    await fc.assert(
      fc.asyncProperty(privateKey, messageArb(goodAddress), domainArb, async (key, base, domain) => {
        const viem = privateKeyToAccount(key);
        const message = { ...base, client: viem.address };
        const typed = {
          domain: glassboxDomain(domain),
          types: INFER_REQUEST_TYPES,
          primaryType: 'InferRequest' as const,
          message,
        };
        const signature = await signRequest(privateKeyToSigner(key), message, domain);
        expect(signature).toBe(await viem.signTypedData(typed));
        expect(await verifyRequestSignature(message, signature, domain)).toBe(viem.address);
      }),
      { numRuns: 40 },
    );
  });

  it('build their message from the wire head: model digest, maxPrice as uint256, trace as a bool', () => {
    const client = privateKeyToAccount(toHex(7n, { size: 32 })).address;
    const message = requestMessage(
      { requestId: `0x${'ab'.repeat(32)}`, client: client.toLowerCase(), model: MODEL, maxPrice: '1000' },
      { provider: DOMAIN.verifyingContract, inputHash: `0x${'cd'.repeat(32)}` },
    );
    expect(message).toEqual({
      requestId: `0x${'ab'.repeat(32)}`,
      client,
      provider: DOMAIN.verifyingContract,
      model: modelDigest(MODEL),
      inputHash: `0x${'cd'.repeat(32)}`,
      maxPrice: 1000n,
      trace: false,
    });
  });

  it('are refused, naming the field `signature`, when any field, the provider or the chain differs', async () => {
    const key = toHex(11n, { size: 32 });
    const client = privateKeyToAccount(key).address;
    const message: InferRequestMessage = {
      requestId: `0x${'01'.repeat(32)}`,
      client,
      provider: getAddress(`0x${'02'.repeat(20)}`),
      model: modelDigest(MODEL),
      inputHash: `0x${'03'.repeat(32)}`,
      maxPrice: 5n,
      trace: false,
    };
    const signature = await signRequest(privateKeyToSigner(key), message, DOMAIN);
    const changed: [string, InferRequestMessage, typeof DOMAIN][] = [
      ['requestId', { ...message, requestId: `0x${'09'.repeat(32)}` }, DOMAIN],
      ['client', { ...message, client: getAddress(`0x${'04'.repeat(20)}`) }, DOMAIN],
      ['provider', { ...message, provider: getAddress(`0x${'05'.repeat(20)}`) }, DOMAIN],
      ['model', { ...message, model: `0x${'06'.repeat(32)}` }, DOMAIN],
      ['inputHash', { ...message, inputHash: `0x${'07'.repeat(32)}` }, DOMAIN],
      ['maxPrice', { ...message, maxPrice: 6n }, DOMAIN],
      ['trace', { ...message, trace: true }, DOMAIN],
      ['chainId', message, { ...DOMAIN, chainId: 1 }],
    ];
    for (const [what, m, d] of changed) {
      const error = await verifyRequestSignature(m, signature, d).catch((e: unknown) => e);
      expect(isGlassboxError(error, 'SIGNATURE_INVALID'), what).toBe(true);
      expect((error as { field?: string }).field, what).toBe('signature');
    }
    // a signature the chain would refuse is refused even though it recovers to the client
    const { highS } = nonCanonical(signature);
    await expect(verifyRequestSignature(message, highS, DOMAIN)).rejects.toMatchObject({
      code: 'SIGNATURE_INVALID',
      field: 'signature',
      message: expect.stringContaining('not canonical') as string,
    });
  });
});
