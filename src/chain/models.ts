import type { Address, Hex } from 'viem';
import type { GlassboxClient, TxResult } from './client.js';
import { readFrom, sendTo, toModelDigest, toModelId, type ModelRef } from './contracts.js';
import { isContractRevert, type ChainCallErrorType, type ContractRevertErrorType } from './errors.js';

export type RegisterModelParameters = {
  /** The model id (manifest CIDv1) or its digest; the manifest CID recorded is the id. */
  readonly model: ModelRef;
  /** Whether the model's comparison policy is `exact` (what makes equivocation provable). */
  readonly exact: boolean;
  /** Free-form metadata (e.g. name and version as JSON). */
  readonly metadata?: string;
  /** The version this one supersedes (must be registered by the same owner). */
  readonly previous?: ModelRef;
};

const ZERO: Hex = `0x${'0'.repeat(64)}`;

/** Why `registerModel` fails: `ModelExists` when the digest is registered already (by anyone). */
export type RegisterModelErrorType =
  | ContractRevertErrorType<
      'ZeroModelId' | 'EmptyManifestCid' | 'ModelExists' | 'UnknownModel' | 'NotModelOwner'
    >
  | ChainCallErrorType;

export function registerModel(client: GlassboxClient, params: RegisterModelParameters): Promise<TxResult> {
  return sendTo(client, 'modelRegistry', 'register', [
    toModelDigest(params.model),
    toModelId(params.model),
    params.metadata ?? '',
    params.exact,
    params.previous === undefined ? ZERO : toModelDigest(params.previous),
  ]);
}

export function deprecateModel(client: GlassboxClient, model: ModelRef): Promise<TxResult> {
  return sendTo(client, 'modelRegistry', 'deprecate', [toModelDigest(model)]);
}

export type ModelRecord = {
  readonly digest: Hex;
  readonly owner: Address;
  readonly manifestCid: string;
  readonly metadata: string;
  readonly exact: boolean;
  readonly deprecated: boolean;
  /** The digest of the version this one supersedes, or undefined for a first version. */
  readonly previous: Hex | undefined;
};

/** The model's record, or undefined when it is not registered. */
export async function getModel(client: GlassboxClient, model: ModelRef): Promise<ModelRecord | undefined> {
  const digest = toModelDigest(model);
  if (!(await readFrom(client, 'modelRegistry', 'exists', [digest]))) return undefined;
  try {
    const m = await readFrom(client, 'modelRegistry', 'getModel', [digest]);
    return { digest, ...m, previous: m.previous === ZERO ? undefined : m.previous };
  } catch (error) {
    if (isContractRevert(error, 'UnknownModel')) return undefined;
    throw error;
  }
}
