import {
  bytesToHex,
  hashMessage,
  hashTypedData,
  hexToBytes,
  recoverAddress,
  type Address,
  type Hex,
} from 'viem';
import { privateKeyToAccount, sign, type LocalAccount, type PrivateKeyAccount } from 'viem/accounts';
import { keccak256Bytes } from './keccak.js';

/*
 * secp256k1 signing and signer recovery for receipts and vouchers. Every request signs and recovers
 * twice (a voucher and a receipt), and viem's pure-JS curve (@noble/curves) takes about 1.8 ms per
 * recovery and 0.4 ms per signature here. The `secp256k1` package's native libsecp256k1 binding
 * does the same in about 0.07 ms; it ships prebuilt binaries (linux x64 glibc and musl, darwin
 * arm64, win32 x64) that load without a compiler or a download. Where it does not load (another
 * platform, a browser), or when GLASSBOX_SECP256K1=js, viem does the work. Both give the same
 * bytes: RFC 6979 nonces, low-s, v = 27 + recovery bit (tested against viem property by property).
 */

/** The part of the `secp256k1` package's native binding used here (its own types are not installed). */
type NativeSecp256k1 = {
  ecdsaSign(message: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recid: number };
  ecdsaRecover(signature: Uint8Array, recid: number, message: Uint8Array, compressed: boolean): Uint8Array;
};

async function loadNative(): Promise<NativeSecp256k1 | undefined> {
  const env = typeof process === 'undefined' ? undefined : process;
  if (!env?.versions?.node || env.env.GLASSBOX_SECP256K1 === 'js') return undefined;
  try {
    const { createRequire } = await import('node:module');
    // `secp256k1/bindings` is the native binding only: it throws instead of falling back to its
    // pure-JS `elliptic` implementation, which is slower than viem's.
    return createRequire(import.meta.url)('secp256k1/bindings') as NativeSecp256k1;
  } catch {
    return undefined;
  }
}

const native = await loadNative();

/** Which implementation signs and recovers in this process. */
export const secp256k1Backend: 'native' | 'js' = native ? 'native' : 'js';

const HEX_32 = /^0x[0-9a-fA-F]{64}$/;
const SIGNATURE = /^0x[0-9a-fA-F]{130}$/;

/** Signs a 32-byte digest: the 65-byte r || s || v hex signature viem's `sign({ to: 'hex' })` gives. */
export async function signDigest(privateKey: Hex, digest: Hex): Promise<Hex> {
  if (native && HEX_32.test(privateKey) && HEX_32.test(digest)) {
    try {
      const { signature, recid } = native.ecdsaSign(hexToBytes(digest), hexToBytes(privateKey));
      const out = new Uint8Array(65);
      out.set(signature);
      out[64] = 27 + recid;
      return bytesToHex(out);
    } catch {
      // an invalid key: viem says why
    }
  }
  return sign({ hash: digest, privateKey, to: 'hex' });
}

/** The address whose key signed `digest`; throws (as viem does) when the signature is malformed. */
export async function recoverDigestSigner(digest: Hex, signature: Hex): Promise<Address> {
  if (native && HEX_32.test(digest) && SIGNATURE.test(signature)) {
    const v = parseInt(signature.slice(130), 16);
    const recid = v === 27 || v === 28 ? v - 27 : v === 0 || v === 1 ? v : -1;
    if (recid >= 0) {
      try {
        const sig = hexToBytes(signature);
        const pub = native.ecdsaRecover(sig.subarray(0, 64), recid, hexToBytes(digest), false);
        return checksum(keccak256Bytes(pub.subarray(1)).subarray(12));
      } catch {
        // not a valid signature for libsecp256k1: viem decides (and says why)
      }
    }
  }
  return recoverAddress({ hash: digest, signature });
}

/** The order n of the secp256k1 group. */
export const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/**
 * Why a 65-byte r || s || v signature is not one OpenZeppelin's ECDSA.recover accepts, or undefined
 * when it is canonical: 65 bytes, v 27 or 28, 0 < r < n, 0 < s <= n/2. Recovery here (libsecp256k1
 * and viem alike) also accepts v 0/1 and high s, and so would a provider; but the chain refuses
 * them (PaymentEscrow.redeem reverts, ReceiptLedger.recoverSigner returns 0), so a voucher or
 * receipt signed that way is worthless there and must be refused wherever it is accepted.
 * Returned as text so each caller builds the error its boundary needs.
 */
export function signatureProblem(signature: string): string | undefined {
  if (!/^0x[0-9a-fA-F]*$/.test(signature) || signature.length % 2 !== 0)
    return 'the signature is not 0x-hex bytes';
  const bytes = (signature.length - 2) / 2;
  if (bytes !== 65) return `the signature is ${bytes} bytes, not 65 (r || s || v)`;
  const r = BigInt(`0x${signature.slice(2, 66)}`);
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  const v = parseInt(signature.slice(130), 16);
  if (v !== 27 && v !== 28) return `the signature's v is ${v}, not 27 or 28`;
  if (r === 0n || r >= SECP256K1_N) return "the signature's r is not in 1..n-1";
  if (s === 0n) return "the signature's s is zero";
  if (s > SECP256K1_N / 2n) return "the signature's s is in the upper half of the curve order (not low-s)";
  return undefined;
}

/** EIP-55 checksum of a 20-byte address (the WASM keccak, not viem's pure-JS one). */
function checksum(address: Uint8Array): Address {
  const lower = bytesToHex(address).slice(2);
  const hash = keccak256Bytes(new TextEncoder().encode(lower));
  let out = '0x';
  for (let i = 0; i < 40; i++) {
    const nibble = (hash[i >> 1]! >> (i % 2 === 0 ? 4 : 0)) & 0xf;
    out += nibble >= 8 ? lower[i]!.toUpperCase() : lower[i]!;
  }
  return out as Address;
}

/**
 * viem's `privateKeyToAccount`, with `sign`, `signMessage` and `signTypedData` on the native curve
 * where it loads (transactions and authorizations stay with viem). The same signatures, faster.
 */
export function privateKeyToSigner(privateKey: Hex): PrivateKeyAccount {
  const base = privateKeyToAccount(privateKey);
  if (!native) return base;
  const account: PrivateKeyAccount = {
    ...base,
    sign: ({ hash }) => signDigest(privateKey, hash),
    signMessage: ({ message }) => signDigest(privateKey, hashMessage(message)),
    signTypedData: (typedData) => signDigest(privateKey, hashTypedData(typedData)),
  };
  return account;
}

/** Signs a digest with `account`: its `sign` when it has one (local accounts do), else undefined. */
export async function signDigestWith(account: LocalAccount, digest: Hex): Promise<Hex | undefined> {
  return account.sign ? account.sign({ hash: digest }) : undefined;
}
