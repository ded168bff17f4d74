import type { Address, Hex } from 'viem';
import {
  addStake,
  getModel,
  getOffer,
  getProvider,
  registerModel,
  registerProvider,
  setEndpoint,
  setOffer,
  setRuntimes,
  setSigner,
  setVoter,
  type GlassboxClient,
} from '../chain/index.js';
import { isGlassboxError } from '../protocol/errors.js';
import type { ModelPackage } from '../protocol/manifest.js';

/*
 * What a node makes true on chain before it serves: registered with its endpoint and signing key,
 * staked at least `stake`, each model registered on the ModelRegistry and offered at its price.
 * Each step reads first and writes only what differs, so a restart sends no transaction.
 */

export type EnsureProviderParameters = {
  readonly endpoint: string;
  readonly signer: Address;
  readonly stake: bigint;
  /** The admitted runtime profile hashes it serves and judges under (one per engine). */
  readonly runtimes: readonly Hex[];
  /** Opt in to committee duty (the `committee` role). */
  readonly voter?: boolean;
};

export type ChainAction = { readonly action: string; readonly detail?: string };

export async function ensureProvider(
  client: GlassboxClient,
  params: EnsureProviderParameters,
): Promise<ChainAction[]> {
  const address = client.walletClient!.account.address;
  const info = await getProvider(client, address);
  const done: ChainAction[] = [];
  if (!info.registered) {
    await registerProvider(client, params);
    done.push({ action: 'registerProvider', detail: params.endpoint });
  }
  if (info.registered && info.endpoint !== params.endpoint) {
    await setEndpoint(client, params.endpoint);
    done.push({ action: 'setEndpoint', detail: params.endpoint });
  }
  if (info.registered && info.signer.toLowerCase() !== params.signer.toLowerCase()) {
    await setSigner(client, params.signer);
    done.push({ action: 'setSigner', detail: params.signer });
  }
  if (info.registered && info.stake < params.stake) {
    await addStake(client, params.stake - info.stake);
    done.push({ action: 'addStake', detail: (params.stake - info.stake).toString() });
  }
  if (!sameSet(info.runtimes, params.runtimes)) {
    await setRuntimes(client, params.runtimes);
    done.push({ action: 'setRuntimes', detail: params.runtimes.join(',') });
  }
  const voter = params.voter ?? false;
  if (voter !== info.voter) {
    await setVoter(client, voter);
    done.push({ action: 'setVoter', detail: String(voter) });
  }
  return done;
}

/** Registers the model on the ModelRegistry (owned by this node's account) if nobody has. */
export async function ensureModelRegistered(
  client: GlassboxClient,
  pkg: ModelPackage,
): Promise<ChainAction[]> {
  if (await getModel(client, pkg.id)) return [];
  const { name, version } = pkg.manifest;
  try {
    await registerModel(client, {
      model: pkg.id,
      exact: pkg.manifest.policy.kind === 'exact',
      metadata: JSON.stringify({ name, version }),
    });
  } catch (error) {
    // Another node starting at the same time registered it first: what we wanted.
    if (isGlassboxError(error, 'CHAIN_REVERTED') && (await getModel(client, pkg.id))) return [];
    throw error;
  }
  return [{ action: 'registerModel', detail: pkg.id }];
}

/**
 * Offers `model` at the pair (`price`, `inputPrice`, default 0) unless that pair is already in force
 * or announced.
 */
export async function ensureOffer(
  client: GlassboxClient,
  params: { model: string; price: bigint; inputPrice?: bigint },
): Promise<ChainAction[]> {
  const provider = client.walletClient!.account.address;
  const inputPrice = params.inputPrice ?? 0n;
  const offer = await getOffer(client, { provider, model: params.model });
  const announced = offer.pending?.price === params.price && offer.pending.inputPrice === inputPrice;
  const inForce =
    offer.price === params.price && offer.inputPrice === inputPrice && offer.pending === undefined;
  if (offer.active && (announced || inForce)) return [];
  await setOffer(client, { model: params.model, price: params.price, inputPrice });
  const detail = `${params.model} ${params.price}${inputPrice === 0n ? '' : ` input ${inputPrice}`}`;
  return [{ action: 'setOffer', detail }];
}

const sameSet = (a: readonly Hex[], b: readonly Hex[]): boolean =>
  a.length === b.length && a.every((x) => b.some((y) => y.toLowerCase() === x.toLowerCase()));
