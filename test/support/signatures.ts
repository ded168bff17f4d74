import { toHex, type Hex } from 'viem';
import { SECP256K1_N } from '../../src/protocol/secp256k1.js';

/**
 * The malleable twins of a valid 65-byte signature: v as 0/1, and s as n - s with v flipped.
 * libsecp256k1 and viem recover the same signer from both; OpenZeppelin's ECDSA.recover refuses them.
 */
export function nonCanonical(signature: Hex): { parity: Hex; highS: Hex } {
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  const v = parseInt(signature.slice(130), 16);
  const flipped = (v === 27 ? 28 : 27).toString(16);
  return {
    parity: `${signature.slice(0, 130)}0${v - 27}` as Hex,
    highS: `${signature.slice(0, 66)}${toHex(SECP256K1_N - s, { size: 32 }).slice(2)}${flipped}` as Hex,
  };
}
