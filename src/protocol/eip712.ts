import { bytesToHex, hashDomain, hexToBytes, isAddress, stringToBytes, type Hex } from 'viem';
import { glassboxDomain, type GlassboxDomain } from './domain.js';
import { keccak256Bytes } from './keccak.js';

/*
 * EIP-712 hashing of flat structs of fixed-size fields (bytes32, address, uintN, bool): what
 * receipts, vouchers and signed requests are. viem's hashStruct / hashTypedData are general (they
 * re-derive the type, ABI-encode through hex strings and hash with pure-JS keccak: ~0.2 ms a
 * receipt); here each field is written straight into one buffer and hashed with the WASM keccak
 * (~10 µs). The result is viem's, byte for byte (tested); a message viem would reject or treat
 * specially (a wrongly checksummed address, an out-of-range integer, a non-hex string) is handed to
 * viem, so errors stay viem's too.
 */

export type FlatField = { readonly name: string; readonly type: string };

export type FlatStruct = {
  /** keccak256(typeHash || encodeData(message)), or undefined when viem must decide. */
  hash(message: Readonly<Record<string, unknown>>): Uint8Array | undefined;
};

const HEX_32 = /^0x[0-9a-fA-F]{64}$/;
const UINT = /^uint(\d+)$/;

export function flatStruct(primaryType: string, fields: readonly FlatField[]): FlatStruct {
  const encodeType = `${primaryType}(${fields.map((f) => `${f.type} ${f.name}`).join(',')})`;
  const typeHash = keccak256Bytes(stringToBytes(encodeType));
  const writers = fields.map((f): ((out: Uint8Array, at: number, value: unknown) => boolean) => {
    if (f.type === 'bytes32')
      return (out, at, v) => {
        if (typeof v !== 'string' || !HEX_32.test(v)) return false;
        out.set(hexToBytes(v as Hex), at);
        return true;
      };
    if (f.type === 'address')
      return (out, at, v) => {
        if (typeof v !== 'string' || !isAddress(v)) return false;
        out.set(hexToBytes(v as Hex), at + 12);
        return true;
      };
    if (f.type === 'bool')
      return (out, at, v) => {
        if (typeof v !== 'boolean') return false;
        out[at + 31] = v ? 1 : 0;
        return true;
      };
    const bits = Number(UINT.exec(f.type)?.[1] ?? 0);
    if (bits > 0 && bits <= 256 && bits % 8 === 0) {
      const max = (1n << BigInt(bits)) - 1n;
      return (out, at, v) => {
        if (typeof v !== 'bigint' || v < 0n || v > max) return false;
        let x = v;
        for (let i = 31; i >= 0 && x > 0n; i--) {
          out[at + i] = Number(x & 0xffn);
          x >>= 8n;
        }
        return true;
      };
    }
    throw new Error(`flatStruct: ${f.type} is not a fixed-size field type`);
  });
  return {
    hash(message) {
      const out = new Uint8Array(32 * (fields.length + 1));
      out.set(typeHash, 0);
      for (let i = 0; i < fields.length; i++)
        if (!writers[i]!(out, 32 * (i + 1), message[fields[i]!.name])) return undefined;
      return keccak256Bytes(out);
    },
  };
}

const DOMAIN_FIELDS = [
  { name: 'name', type: 'string' },
  { name: 'version', type: 'string' },
  { name: 'chainId', type: 'uint256' },
  { name: 'verifyingContract', type: 'address' },
];
const domains = new Map<string, Uint8Array>();

/** The domain separator of a Glassbox domain (viem's hashDomain, computed once per domain). */
export function domainSeparator(domain: GlassboxDomain): Uint8Array {
  const key = `${domain.chainId}:${domain.verifyingContract}`;
  let hit = domains.get(key);
  if (!hit) {
    hit = hexToBytes(
      hashDomain({
        domain: glassboxDomain(domain),
        types: { EIP712Domain: DOMAIN_FIELDS },
      } as Parameters<typeof hashDomain>[0]),
    );
    if (domains.size >= 256) domains.clear();
    domains.set(key, hit);
  }
  return hit;
}

const PREFIX = Uint8Array.of(0x19, 0x01);

/** keccak256(0x1901 || domainSeparator || structHash): the digest an EIP-712 signature signs. */
export function typedDataDigest(domain: GlassboxDomain, structHash: Uint8Array): Hex {
  return bytesToHex(keccak256Bytes(PREFIX, domainSeparator(domain), structHash));
}
