import { SimpleMerkleTree } from '@openzeppelin/merkle-tree';
import fc from 'fast-check';
import { bytesToHex, encodePacked, keccak256, stringToBytes, type Hex } from 'viem';
import { describe, expect, it } from 'vitest';
import {
  CHUNK_BYTES,
  CHUNKS_TAG,
  chunkData,
  dataHash,
  dataHashStream,
  joinChunks,
  MAX_CHUNKS,
  verifyChunk,
  ZERO_ROOT,
  type DataChunk,
} from '../../src/protocol/data.js';
import { seededBytes } from '../support/arbitraries.js';

/*
 * Data commitments (src/protocol/data.ts, docs/protocol.md "Data commitments"): keccak256 of data
 * up to a chunk, as receipts always had; above, a commitment to the length and a Merkle root over
 * 64 KiB chunks. Each chunk opens at its own index only, and no datum opens another's hash.
 */

const bytesOf = (length: number, seed: number) => seededBytes(length, seed);

// lengths around chunk boundaries, up to five chunks
const lengthArb = fc.oneof(
  fc.constantFrom(
    0,
    1,
    58,
    CHUNK_BYTES - 1,
    CHUNK_BYTES,
    CHUNK_BYTES + 1,
    2 * CHUNK_BYTES,
    3 * CHUNK_BYTES + 7,
  ),
  fc.integer({ min: 0, max: 5 * CHUNK_BYTES }),
);
const dataArb = fc.tuple(lengthArb, fc.integer()).map(([length, seed]) => bytesOf(length, seed));

/** The commitment as docs/protocol.md spells it, with viem and OpenZeppelin's tree: an independent build. */
function specHash(data: Uint8Array): Hex {
  if (
    data.length <= CHUNK_BYTES &&
    !(data.length === 58 && bytesToHex(data).startsWith(bytesToHex(stringToBytes(CHUNKS_TAG))))
  )
    return keccak256(data);
  const count = Math.max(1, Math.ceil(data.length / CHUNK_BYTES));
  const leaves = Array.from({ length: count }, (_, i) =>
    keccak256(
      encodePacked(
        ['uint32', 'bytes32'],
        [i, keccak256(data.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES))],
      ),
    ),
  );
  const root = SimpleMerkleTree.of(leaves, { sortLeaves: false }).root as Hex;
  return keccak256(encodePacked(['string', 'uint64', 'bytes32'], [CHUNKS_TAG, BigInt(data.length), root]));
}

describe('dataHash', () => {
  it('is keccak256 of data up to one chunk, as every receipt before chunks', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        expect(dataHash(data)).toBe(keccak256(data));
      }),
    );
    expect(dataHash(new Uint8Array(0))).toBe(
      '0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470',
    );
    const full = bytesOf(CHUNK_BYTES, 7);
    expect(dataHash(full)).toBe(keccak256(full));
  });

  it('above one chunk is the commitment docs/protocol.md specifies, byte for byte', () => {
    fc.assert(
      fc.property(dataArb, (data) => {
        expect(dataHash(data)).toBe(specHash(data));
      }),
      { numRuns: 40 },
    );
  });

  it('worked example of docs/protocol.md: 65,537 bytes i mod 251', () => {
    const data = new Uint8Array(CHUNK_BYTES + 1).map((_, i) => i % 251);
    const c = chunkData(data);
    expect([c.count, c.length]).toEqual([2, 65_537]);
    expect(c.root).toBe('0x05e07a0c57b2ff40734fbad03efdc209f63f67f272fcdc78c4b8ea30c69bb5cc');
    expect(c.hash).toBe('0xf1bf0e8d7ab4386da3abb0f77ce766da77d4bbb637852f04fc4c4d6638262b26');
    expect(dataHash(data)).toBe(c.hash);
    expect(specHash(data)).toBe(c.hash);
  });

  it('streamed in parts split anywhere, is the hash of the whole', () => {
    fc.assert(
      fc.property(dataArb, fc.array(fc.nat(), { maxLength: 6 }), (data, cuts) => {
        const at = [0, ...cuts.map((c) => c % (data.length + 1)).sort((a, b) => a - b), data.length];
        const streamed = dataHashStream((update) => {
          for (let i = 1; i < at.length; i++) update(data.subarray(at[i - 1], at[i]));
        });
        expect(streamed).toBe(dataHash(data));
      }),
      { numRuns: 40 },
    );
  });

  it('a datum shaped like a chunked commitment is never hashed whole: it cannot open the large datum it names', () => {
    const large = bytesOf(3 * CHUNK_BYTES, 3);
    const { root, hash } = chunkData(large);
    // the 58 bytes whose keccak256 is the large datum's hash
    const header = new Uint8Array([
      ...stringToBytes(CHUNKS_TAG),
      ...new Uint8Array(new BigUint64Array([BigInt(large.length)]).buffer).reverse(),
      ...Buffer.from(root.slice(2), 'hex'),
    ]);
    expect(keccak256(header)).toBe(hash);
    expect(dataHash(header)).not.toBe(hash);
    expect(verifyChunk(hash, { length: 58, root: ZERO_ROOT, index: 0, data: header, proof: [] })).toBe(false);
    // it is its own one-chunk commitment, and opens that, in chunks only
    const own = chunkData(header);
    expect([own.count, own.root === ZERO_ROOT]).toEqual([1, false]);
    expect(verifyChunk(own.hash, own.chunk(0))).toBe(true);
  });
});

describe('chunk openings', () => {
  /** Every way to get chunk `c` of `hash` wrong, one field at a time. */
  function wrongs(chunk: DataChunk, count: number): [string, DataChunk][] {
    const flipped = new Uint8Array(chunk.data);
    if (flipped.length > 0) flipped[flipped.length >> 1]! ^= 1;
    const out: [string, DataChunk][] = [
      ['index + 1', { ...chunk, index: chunk.index + 1 }],
      ['length + 1', { ...chunk, length: chunk.length + 1 }],
      ['length - 1', { ...chunk, length: chunk.length - 1 }],
      ['a byte more', { ...chunk, data: new Uint8Array([...chunk.data, 0]) }],
    ];
    if (chunk.index > 0) out.push(['index - 1', { ...chunk, index: chunk.index - 1 }]);
    if (flipped.length > 0) out.push(['a flipped bit', { ...chunk, data: flipped }]);
    if (chunk.data.length > 0) out.push(['a byte less', { ...chunk, data: chunk.data.subarray(1) }]);
    if (chunk.root !== ZERO_ROOT) {
      out.push(['another root', { ...chunk, root: keccak256(chunk.root) }]);
      out.push(['as if hashed whole', { ...chunk, root: ZERO_ROOT, length: chunk.data.length, proof: [] }]);
      if (count > 1) out.push(['no proof', { ...chunk, proof: [] }]);
    }
    return out;
  }

  it('any chunk of any datum opens at its own index, and at no other, with no other length or bytes', () => {
    fc.assert(
      fc.property(dataArb, (data) => {
        const c = chunkData(data);
        expect(c.hash).toBe(dataHash(data));
        for (let i = 0; i < c.count; i++) {
          const chunk = c.chunk(i);
          expect(verifyChunk(c.hash, chunk), `chunk ${i} of ${c.count}`).toBe(true);
          for (const [what, wrong] of wrongs(chunk, c.count))
            expect(verifyChunk(c.hash, wrong), `chunk ${i} of ${c.count}: ${what}`).toBe(false);
          // and at every other index, with that index's proof
          for (let j = 0; j < c.count; j++)
            if (j !== i)
              expect(verifyChunk(c.hash, { ...chunk, index: j, proof: c.chunk(j).proof })).toBe(false);
        }
        const joined = joinChunks(c.hash, Array.from({ length: c.count }, (_, i) => c.chunk(i)).reverse());
        expect(Buffer.from(joined).equals(data)).toBe(true); // toEqual walks bytes one by one: slow
      }),
      { numRuns: 40 },
    );
  });

  it('a chunk of one datum opens no other datum, even of the same length', () => {
    const a = chunkData(bytesOf(2 * CHUNK_BYTES + 5, 1));
    const b = chunkData(bytesOf(2 * CHUNK_BYTES + 5, 2));
    for (let i = 0; i < a.count; i++) expect(verifyChunk(b.hash, a.chunk(i))).toBe(false);
  });

  it('refuses more than MAX_CHUNKS chunks', () => {
    const length = MAX_CHUNKS * CHUNK_BYTES + 1;
    const data = bytesOf(length, 5);
    const c = chunkData(data);
    expect(c.count).toBe(MAX_CHUNKS + 1);
    expect(verifyChunk(c.hash, c.chunk(0))).toBe(false);
  });

  it('joining names a missing or repeated chunk, and data of another hash', () => {
    const c = chunkData(bytesOf(3 * CHUNK_BYTES, 9));
    const all = [0, 1, 2].map((i) => c.chunk(i));
    const code = expect.objectContaining({ code: 'DATA_INVALID' });
    expect(() => joinChunks(c.hash, [all[0]!, all[2]!])).toThrow(/chunk 1 .* missing/);
    expect(() => joinChunks(c.hash, [all[0]!, all[1]!, all[1]!, all[2]!])).toThrow(/repeated/);
    expect(() => joinChunks(c.hash, [])).toThrow(code);
    expect(() => joinChunks(keccak256('0x01'), all)).toThrow(/another hash/);
  });
});
