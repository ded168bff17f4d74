import { fileCid } from '../protocol/index.js';
import { blobCid, blobNotFound, verifyBlob, type BlobStore } from './blob-store.js';

/**
 * A blob store in memory, for clients that pack or check a model without a disk. It keeps the
 * same contract as the filesystem store, re-hashing on every read. `blobs` (canonical CID -> bytes)
 * may be passed in to share or inspect the backing map.
 */
export function createMemoryStore(blobs: Map<string, Uint8Array> = new Map()): BlobStore {
  return {
    put: async (bytes) => {
      const cid = await fileCid(bytes);
      blobs.set(cid, bytes.slice());
      return cid;
    },
    get: async (cid) => {
      const canonical = blobCid(cid);
      const bytes = blobs.get(canonical);
      if (bytes === undefined) throw blobNotFound(canonical);
      await verifyBlob(canonical, bytes);
      return bytes.slice();
    },
    has: async (cid) => blobs.has(blobCid(cid)),
    delete: async (cid) => blobs.delete(blobCid(cid)),
    list: async function* () {
      yield* [...blobs.keys()];
    },
  };
}
