import * as raw from 'multiformats/codecs/raw';
import { sha256 } from 'multiformats/hashes/sha2';
import { fileCid, GlassboxError, parseCid } from '../protocol/index.js';

/**
 * A content-addressed store of blobs (whole files), each named by the IPFS CID of its bytes
 * (`fileCid`: UnixFS, profile unixfs-v1-2025). The filesystem backend is the first; an IPFS
 * backend can implement the same contract later, because the names are the ones IPFS computes.
 *
 * The contract every backend keeps: `get` re-hashes what it read and refuses bytes that do not
 * hash to the CID asked for (BLOB_CORRUPT); a CID that is absent is BLOB_NOT_FOUND; a string that
 * is not a CID a store can hold is CID_INVALID.
 */
export type BlobStore = {
  /** Stores `bytes` and returns their CID. Storing the same bytes again is a no-op. */
  readonly put: (bytes: Uint8Array) => Promise<string>;
  /** The bytes stored under `cid`, re-hashed on every read. */
  readonly get: (cid: string) => Promise<Uint8Array>;
  /** Whether a blob is stored under `cid` (without reading it: present, not necessarily intact). */
  readonly has: (cid: string) => Promise<boolean>;
  /** Removes the blob under `cid`; false when there was none. */
  readonly delete: (cid: string) => Promise<boolean>;
  /** The CIDs of every stored blob, in no particular order. */
  readonly list: () => AsyncIterable<string>;
};

/** The multicodec of UnixFS nodes (files above one chunk have a dag-pb root). */
const DAG_PB_CODE = 0x70;

/**
 * Parses a CID a blob store can hold: CIDv1, raw or dag-pb, sha2-256; anything `fileCid` can
 * return. Returns it in its canonical form (base32, lowercase), the only form a backend should use
 * as a key or a path: its characters are `[a-z2-7]`, so it can never escape a directory.
 */
export function blobCid(value: string, field = 'cid'): string {
  const cid = parseCid(value, field);
  if (cid.version !== 1)
    throw new GlassboxError('CID_INVALID', `${field} ${value} is a CIDv0; blobs are named by CIDv1`, {
      field,
    });
  if (cid.code !== raw.code && cid.code !== DAG_PB_CODE)
    throw new GlassboxError(
      'CID_INVALID',
      `${field} ${value} has codec 0x${cid.code.toString(16)}; blobs are raw (0x55) or dag-pb (0x70)`,
      { field },
    );
  if (cid.multihash.code !== sha256.code)
    throw new GlassboxError(
      'CID_INVALID',
      `${field} ${value} uses hash 0x${cid.multihash.code.toString(16)}; blobs are hashed with sha2-256`,
      { field },
    );
  return cid.toV1().toString();
}

/**
 * Throws BLOB_CORRUPT unless `bytes` hash to `cid` (canonical form): the check every `get` makes.
 * The message names the CID asked for and the one the bytes actually have.
 */
export async function verifyBlob(cid: string, bytes: Uint8Array, where?: string): Promise<void> {
  const actual = await fileCid(bytes);
  if (actual === cid) return;
  throw new GlassboxError(
    'BLOB_CORRUPT',
    `blob ${cid} is corrupt: its ${bytes.length} bytes hash to ${actual}`,
    {
      metaMessages: [
        ...(where === undefined ? [] : [`stored at ${where}`]),
        'the stored bytes were changed or substituted; put the original bytes again to repair it',
      ],
      details: { cid, actual, size: bytes.length, ...(where === undefined ? {} : { where }) },
    },
  );
}

export function blobNotFound(cid: string, where?: string): GlassboxError {
  return new GlassboxError('BLOB_NOT_FOUND', `blob ${cid} is not in the store`, {
    ...(where === undefined ? {} : { metaMessages: [`looked for ${where}`] }),
    details: { cid, ...(where === undefined ? {} : { where }) },
  });
}
