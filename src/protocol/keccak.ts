import { createKeccak } from 'hash-wasm';
import type { Hex } from 'viem';

/*
 * keccak256 for bulk data (tensors, traces). hash-wasm's WebAssembly keccak hashes about 250 MB/s
 * here against about 16 MB/s for the pure-JS one, and works in browsers too. Its hasher is created
 * once (asynchronously, hence the top-level await) and reused: JavaScript is single-threaded and
 * each hash runs init-update-digest without yielding, so one instance is never shared mid-hash.
 */
const hasher = await createKeccak(256);

/** keccak256 of what `feed` writes through `update`, without concatenating it first. */
export function keccak256Stream(feed: (update: (part: Uint8Array) => void) => void): Hex {
  hasher.init();
  feed((part) => hasher.update(part));
  return `0x${hasher.digest('hex')}`;
}

/** keccak256 of the concatenated parts, as bytes (for Merkle nodes, where hex would only be converted back). */
export function keccak256Bytes(...parts: Uint8Array[]): Uint8Array {
  hasher.init();
  for (const part of parts) hasher.update(part);
  return hasher.digest('binary');
}
