import { createKeccak } from 'hash-wasm';

/*
 * keccak256 for bulk data (tensors, traces). hash-wasm's WebAssembly keccak hashes about 250 MB/s
 * here against about 16 MB/s for the pure-JS one, and works in browsers too. Its hasher is created
 * once (asynchronously, hence the top-level await) and reused: JavaScript is single-threaded and
 * each hash runs init-update-digest without yielding, so one instance is never shared mid-hash.
 */
const hasher = await createKeccak(256);

/** keccak256 of the concatenated parts, as bytes (for Merkle nodes, where hex would only be converted back). */
export function keccak256Bytes(...parts: Uint8Array[]): Uint8Array {
  hasher.init();
  for (const part of parts) hasher.update(part);
  return hasher.digest('binary');
}

/**
 * keccak256 of each consecutive `chunkBytes` of what `feed` writes (the last chunk may be
 * shorter; empty data is one empty chunk), without concatenating it: parts are split where chunks
 * end, and only the chunk hashes are kept. Also returns the total length and the first
 * `keepBytes` bytes (for checks on short data).
 */
export function keccak256Chunks(
  feed: (update: (part: Uint8Array) => void) => void,
  chunkBytes: number,
  keepBytes: number,
): { hashes: Uint8Array[]; length: number; head: Uint8Array } {
  const hashes: Uint8Array[] = [];
  const head = new Uint8Array(keepBytes);
  let length = 0;
  let filled = 0; // bytes in the chunk being hashed
  hasher.init();
  feed((part) => {
    if (length < keepBytes) head.set(part.subarray(0, keepBytes - length), length);
    length += part.byteLength;
    for (let at = 0; at < part.byteLength;) {
      if (filled === chunkBytes) {
        // a chunk ends only once more data follows it: the last chunk is never empty
        hashes.push(hasher.digest('binary'));
        hasher.init();
        filled = 0;
      }
      const take = Math.min(chunkBytes - filled, part.byteLength - at);
      hasher.update(part.subarray(at, at + take));
      filled += take;
      at += take;
    }
  });
  hashes.push(hasher.digest('binary'));
  return { hashes, length, head: head.subarray(0, Math.min(length, keepBytes)) };
}
