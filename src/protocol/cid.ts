import { importBytes, type ImporterOptions } from 'ipfs-unixfs-importer';
import { CID } from 'multiformats/cid';
import * as raw from 'multiformats/codecs/raw';
import * as Digest from 'multiformats/hashes/digest';
import { sha256 } from 'multiformats/hashes/sha2';
import { bytesToHex, hexToBytes, type Hex } from 'viem';
import { GlassboxError } from './errors.js';

/**
 * Content ids, computed exactly as IPFS computes them so that a model package can be published to
 * and fetched from IPFS unchanged. Files use UnixFS with the `unixfs-v1-2025` profile (IPIP-499,
 * Helia's and Kubo's modern defaults): CIDv1, raw leaves, sha2-256, 1 MiB chunks, balanced DAG of
 * up to 1024 links. A file of one chunk is its raw leaf: `bafkrei…`, the sha2-256 of its bytes.
 */
export const UNIXFS_IMPORT_OPTIONS: ImporterOptions = { profile: 'unixfs-v1-2025' };

/** Only `put` is needed to compute a CID; the blocks themselves are not kept. */
const discardBlocks = {
  put: async (cid: CID) => cid,
};

/** The IPFS CID (string, base32) of a file's bytes. */
export async function fileCid(bytes: Uint8Array): Promise<string> {
  const { cid } = await importBytes(bytes, discardBlocks, UNIXFS_IMPORT_OPTIONS);
  return cid.toString();
}

/** The CIDv1 raw sha2-256 of a single block of bytes (what `fileCid` gives for files up to 1 MiB). */
export function rawCid(bytes: Uint8Array): CID {
  const digest = sha256.digest(bytes);
  if (digest instanceof Promise) throw new Error('sha256 must be synchronous here');
  return CID.createV1(raw.code, digest);
}

export function parseCid(value: string, field = 'cid'): CID {
  try {
    return CID.parse(value);
  } catch (cause) {
    throw new GlassboxError('CID_INVALID', `${field} is not a CID: ${JSON.stringify(value)}`, {
      field,
      cause,
    });
  }
}

/** The 32-byte sha2-256 digest of a raw CIDv1: how a model id is written on chain. */
export function rawCidDigest(value: string, field = 'cid'): Hex {
  const cid = parseCid(value, field);
  if (cid.version !== 1 || cid.code !== raw.code || cid.multihash.code !== sha256.code)
    throw new GlassboxError('CID_INVALID', `${field} is not a CIDv1 raw sha2-256 CID: ${value}`, { field });
  return bytesToHex(cid.multihash.digest);
}

/** The raw CIDv1 whose sha2-256 digest is `digest`: the inverse of `rawCidDigest`. */
export function rawCidFromDigest(digest: Hex): string {
  const bytes = hexToBytes(digest);
  if (bytes.length !== 32) throw new GlassboxError('CID_INVALID', `digest ${digest} is not 32 bytes`);
  return CID.createV1(raw.code, Digest.create(sha256.code, bytes)).toString();
}
