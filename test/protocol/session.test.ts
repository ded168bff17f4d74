import fc from 'fast-check';
import { getAddress, hashTypedData, toHex, type Address } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import { glassboxDomain } from '../../src/protocol/domain.js';
import { privateKeyToSigner } from '../../src/protocol/secp256k1.js';
import {
  formatSessionKey,
  parseSessionKey,
  SESSION_TYPES,
  sessionDigest,
  signSession,
  verifySessionKey,
} from '../../src/protocol/session.js';
import { nonCanonical } from '../support/signatures.js';

const DOMAIN = { chainId: 31337, verifyingContract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' as Address };
const PROVIDER = getAddress(`0x${'02'.repeat(20)}`);
const KEY = toHex(11n, { size: 32 });
const CLIENT = privateKeyToAccount(KEY).address;
const NOW = 1_800_000_000_000;
const goodAddress = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => getAddress(toHex(b)));

async function keyText(
  expiresAt = BigInt(NOW + 60_000),
  provider = PROVIDER,
  domain = DOMAIN,
): Promise<string> {
  return formatSessionKey(await signSession(privateKeyToSigner(KEY), { provider, expiresAt }, domain));
}

describe('session keys', () => {
  it("hash to viem's EIP-712 digest of Session {client, provider, expiresAt uint64}", () => {
    fc.assert(
      fc.property(
        goodAddress,
        goodAddress,
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (client, provider, expiresAt) => {
          const message = { client, provider, expiresAt };
          expect(sessionDigest(message, DOMAIN)).toBe(
            hashTypedData({
              domain: glassboxDomain(DOMAIN),
              types: SESSION_TYPES,
              primaryType: 'Session',
              message,
            }),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it("are viem's signature, formatted gbk.<client>.<expiresAt>.<signature>, and verify to the client", async () => {
    const expiresAt = BigInt(NOW + 60_000);
    const text = await keyText(expiresAt);
    const signature = await privateKeyToAccount(KEY).signTypedData({
      domain: glassboxDomain(DOMAIN),
      types: SESSION_TYPES,
      primaryType: 'Session',
      message: { client: CLIENT, provider: PROVIDER, expiresAt },
    });
    expect(text).toBe(`gbk.${CLIENT}.${expiresAt}.${signature}`);
    expect(parseSessionKey(text)).toEqual({ client: CLIENT, expiresAt, signature });
    expect(await verifySessionKey(text, { provider: PROVIDER, domain: DOMAIN, now: NOW })).toBe(CLIENT);
    // a lowercase client is the same key
    const lower = text.replace(CLIENT, CLIENT.toLowerCase());
    expect(await verifySessionKey(lower, { provider: PROVIDER, domain: DOMAIN, now: NOW })).toBe(CLIENT);
  });

  it('are refused as malformed (REQUEST_INVALID, field authorization), saying which part', () => {
    const good = `gbk.${CLIENT}.1.0x${'11'.repeat(65)}`;
    expect(parseSessionKey(good).expiresAt).toBe(1n);
    const cases: [string, RegExp][] = [
      ['sk-abc', /four dot-separated parts/],
      [good.replace('gbk.', 'gbx.'), /four dot-separated parts/],
      [`${good}.x`, /four dot-separated parts/],
      [good.replace(CLIENT, '0x1234'), /client 0x1234 is not an address/],
      [good.replace('.1.', '.01.'), /expiresAt 01 is not a uint64/],
      [good.replace('.1.', '.18446744073709551616.'), /is not a uint64/],
      [good.replace('.1.', '.-5.'), /is not a uint64/],
      [good.replace('0x1111', '0xzz11'), /signature is not 0x-hex/],
    ];
    for (const [text, why] of cases) {
      expect(() => parseSessionKey(text), text).toThrow(why);
      try {
        parseSessionKey(text);
      } catch (error) {
        expect(error).toMatchObject({ code: 'REQUEST_INVALID', field: 'authorization' });
      }
    }
  });

  it('are refused once expired (REQUEST_INVALID)', async () => {
    const text = await keyText(BigInt(NOW));
    await expect(
      verifySessionKey(text, { provider: PROVIDER, domain: DOMAIN, now: NOW }),
    ).rejects.toMatchObject({
      code: 'REQUEST_INVALID',
      field: 'authorization',
      message: expect.stringContaining('expired at 2027-01-15T08:00:00.000Z') as string,
    });
  });

  it('are refused (SIGNATURE_INVALID) for another provider, chain or ledger, another client, or non-canonical', async () => {
    const text = await keyText();
    const context = { provider: PROVIDER, domain: DOMAIN, now: NOW };
    const refusals = [
      verifySessionKey(text, { ...context, provider: getAddress(`0x${'05'.repeat(20)}`) }),
      verifySessionKey(text, { ...context, domain: { ...DOMAIN, chainId: 1 } }),
      verifySessionKey(text, { ...context, domain: { ...DOMAIN, verifyingContract: PROVIDER } }),
      verifySessionKey(text.replace(CLIENT, getAddress(`0x${'04'.repeat(20)}`)), context),
      // a later expiry than the one signed
      verifySessionKey(text.replace(`.${NOW + 60_000}.`, `.${NOW + 120_000}.`), context),
    ];
    for (const refusal of refusals)
      await expect(refusal).rejects.toMatchObject({
        code: 'SIGNATURE_INVALID',
        field: 'authorization',
        message: expect.stringContaining('another provider or chain, or signed by another key') as string,
      });
    const parsed = parseSessionKey(text);
    const { highS } = nonCanonical(parsed.signature);
    await expect(verifySessionKey({ ...parsed, signature: highS }, context)).rejects.toMatchObject({
      code: 'SIGNATURE_INVALID',
      message: expect.stringContaining('not canonical') as string,
    });
    await expect(verifySessionKey({ ...parsed, signature: '0x11' }, context)).rejects.toMatchObject({
      code: 'SIGNATURE_INVALID',
      message: expect.stringContaining('1 bytes, not 65') as string,
    });
  });
});
