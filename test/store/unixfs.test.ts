import { importBytes } from 'ipfs-unixfs-importer';
import { fixedSize } from 'ipfs-unixfs-importer/chunker';
import { balanced } from 'ipfs-unixfs-importer/layout';
import type { CID } from 'multiformats/cid';
import { describe, expect, it } from 'vitest';
import { fileCid } from '../../src/protocol/index.js';
import { createFsStore } from '../../src/store/index.js';
import { tempDir } from './temp-dir.js';

const MiB = 1024 * 1024;

/** What IPFS computes for a file (Kubo/Helia's unixfs-v1-2025 defaults), spelled out option by option. */
async function ipfsCid(bytes: Uint8Array): Promise<{ cid: string; blocks: number }> {
  const blocks = new Map<string, Uint8Array>();
  const blockstore = {
    put: async (cid: CID, block: Uint8Array) => {
      blocks.set(cid.toString(), block);
      return cid;
    },
  };
  const { cid } = await importBytes(bytes, blockstore, {
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: MiB }),
    layout: balanced({ maxChildrenPerNode: 1024 }),
  });
  return { cid: cid.toString(), blocks: blocks.size };
}

/** Deterministic, incompressible-looking bytes (xorshift32). */
function pseudoRandom(size: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

describe('file CIDs', () => {
  it('give the known CID of the empty file', async () => {
    expect(await fileCid(new Uint8Array())).toBe(
      'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku',
    );
  });

  const sizes: [string, number, 'raw' | 'dag-pb'][] = [
    ['empty', 0, 'raw'],
    ['1 byte', 1, 'raw'],
    ['1 MiB - 1', MiB - 1, 'raw'],
    ['exactly 1 MiB (one chunk)', MiB, 'raw'],
    ['1 MiB + 1 (two chunks)', MiB + 1, 'dag-pb'],
    ['5 MiB + 123', 5 * MiB + 123, 'dag-pb'],
  ];

  it.each(sizes)(
    'of %s equal what ipfs-unixfs-importer computes, and the store names it so',
    async (_, size, kind) => {
      const bytes = pseudoRandom(size, size + 1);
      const expected = await ipfsCid(bytes);
      const cid = await fileCid(bytes);
      expect(cid).toBe(expected.cid);
      // raw leaves: one chunk is its own raw block (bafkrei…); more chunks hang under a dag-pb root (bafybei…)
      expect(cid.startsWith(kind === 'raw' ? 'bafkrei' : 'bafybei')).toBe(true);
      expect(expected.blocks).toBe(kind === 'raw' ? 1 : Math.ceil(size / MiB) + 1);

      const store = createFsStore(await tempDir());
      expect(await store.put(bytes)).toBe(expected.cid);
      // (toEqual walks typed arrays element by element: seconds per MiB)
      expect(Buffer.compare(await store.get(expected.cid), bytes)).toBe(0);
    },
  );
});
