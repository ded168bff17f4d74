import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileCid } from '../protocol/index.js';
import { blobCid, blobNotFound, verifyBlob, type BlobStore } from './blob-store.js';

/** The filesystem backend, with where each blob lives on disk. */
export type FsStore = BlobStore & {
  /** The store's root directory (absolute). */
  readonly dir: string;
  /** The file a blob is (or would be) stored in. Validates `cid`. */
  readonly pathOf: (cid: string) => string;
};

/**
 * A blob store in a directory:
 *
 *     <dir>/blobs/<xy>/<cid>   one file per blob, its exact bytes
 *     <dir>/tmp/               writes in flight, renamed into blobs/ once complete
 *
 * `<cid>` is the canonical base32 CIDv1 and `<xy>` the two characters before its last one
 * (flatfs's next-to-last/2 sharding: CIDs share their first characters, not their last ones).
 *
 * Writes are atomic: the bytes go to a temporary file in the same filesystem, are fsynced, and
 * the file is renamed into place (then its directory is fsynced), so a crash leaves either no blob
 * or the whole blob, never part of one. Reads re-hash. Several processes may share a store.
 */
export function createFsStore(dir: string): FsStore {
  const root = resolve(dir);
  const blobsDir = join(root, 'blobs');
  const tmpDir = join(root, 'tmp');

  const pathOf = (cid: string): string => {
    const canonical = blobCid(cid);
    return join(blobsDir, shardOf(canonical), canonical);
  };

  const put = async (bytes: Uint8Array): Promise<string> => {
    const cid = await fileCid(bytes);
    const path = pathOf(cid);
    // Already stored and intact: nothing to do. Stored but different (corrupted): rewrite it.
    const existing = await readIfExists(path);
    if (existing !== undefined && equalBytes(existing, bytes)) return cid;
    await mkdir(join(blobsDir, shardOf(cid)), { recursive: true });
    await mkdir(tmpDir, { recursive: true });
    await writeAtomic(path, join(tmpDir, `${cid}.${process.pid}.${randomBytes(6).toString('hex')}`), bytes);
    return cid;
  };

  const get = async (cid: string): Promise<Uint8Array> => {
    const canonical = blobCid(cid);
    const path = pathOf(canonical);
    const bytes = await readIfExists(path);
    if (bytes === undefined) throw blobNotFound(canonical, path);
    await verifyBlob(canonical, bytes, path);
    return bytes;
  };

  const has = async (cid: string): Promise<boolean> => {
    try {
      return (await stat(pathOf(cid))).isFile();
    } catch (error) {
      if (isCode(error, 'ENOENT')) return false;
      throw error;
    }
  };

  const del = async (cid: string): Promise<boolean> => {
    try {
      await rm(pathOf(cid));
      return true;
    } catch (error) {
      if (isCode(error, 'ENOENT')) return false;
      throw error;
    }
  };

  async function* list(): AsyncIterable<string> {
    for (const shard of await readdirIfExists(blobsDir)) {
      for (const name of await readdirIfExists(join(blobsDir, shard))) {
        // Only names that are canonical CIDs in their right shard are blobs; skip anything else.
        let canonical: string;
        try {
          canonical = blobCid(name);
        } catch {
          continue;
        }
        if (canonical === name && shardOf(name) === shard) yield name;
      }
    }
  }

  return { dir: root, pathOf, put, get, has, delete: del, list };
}

function shardOf(cid: string): string {
  return cid.slice(-3, -1);
}

async function writeAtomic(path: string, tmpPath: string, bytes: Uint8Array): Promise<void> {
  try {
    const file = await open(tmpPath, 'wx');
    try {
      await file.writeFile(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmpPath, path);
  } catch (error) {
    await rm(tmpPath, { force: true });
    throw error;
  }
  await syncDir(join(path, '..'));
}

/** Makes a rename durable. Not every platform can open a directory (Windows); there it is skipped. */
async function syncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await handle.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename itself is still atomic
  } finally {
    await handle.close();
  }
}

async function readIfExists(path: string): Promise<Uint8Array | undefined> {
  try {
    const buffer = await readFile(path);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    if (isCode(error, 'ENOENT')) return undefined;
    throw error;
  }
}

async function readdirIfExists(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (error) {
    if (isCode(error, 'ENOENT') || isCode(error, 'ENOTDIR')) return [];
    throw error;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

function isCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}
