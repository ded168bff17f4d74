import { getAddress, isAddressEqual, type Address, type Hex } from 'viem';
import { isProviderSigner, isRuntimeAdmitted, getOffer, getProvider } from '../chain/providers.js';
import { hashTensors } from '../protocol/encoding.js';
import { isGlassboxError } from '../protocol/errors.js';
import { modelDigest, type TensorSpec } from '../protocol/manifest.js';
import { recoverReceiptSigner, ZERO_HASH, type SignedReceipt } from '../protocol/receipt.js';
import { signatureProblem } from '../protocol/secp256k1.js';
import type { TensorMap } from '../protocol/tensor.js';
import type { Client } from './client.js';
import type { ProviderCandidate } from './discovery.js';
import { getModels, type ProviderModels } from './transport.js';

/** The checks a receipt goes through; each has a stable name. */
export type CheckName =
  | 'signature'
  | 'signer'
  | 'provider'
  | 'model'
  | 'request'
  | 'client'
  | 'inputHash'
  | 'outputHash'
  | 'params'
  | 'price'
  | 'runtime'
  | 'timestamp'
  | 'outputs'
  | 'trace'
  | 'local'
  /** An LLM receipt's token counts are the ones the provider's answer reported (usage). */
  | 'usage';

export type Check = {
  readonly check: CheckName;
  readonly ok: boolean;
  readonly detail: string;
  /** Set when the check could not be done (a chain read failed): not ok, but not the provider's fault. */
  readonly unknown?: true;
};

/** Every check of one receipt; `ok` when all passed. */
export type ReceiptReport = {
  readonly provider: Address;
  readonly requestId: Hex;
  readonly ok: boolean;
  readonly checks: readonly Check[];
  /** The receipt checked. */
  readonly receipt: SignedReceipt;
};

export type VerifyReceiptParameters = {
  readonly receipt: SignedReceipt;
  /** The model id (CID) that was asked for. */
  readonly model: string;
  /** The request id that was sent. */
  readonly requestId: Hex;
  /** The provider that was asked (default: the receipt's own `provider`). */
  readonly provider?: Address;
  /** The client's cap; the receipt's price must be at most this and at most the quote. */
  readonly maxPrice?: bigint;
  /** The inputs sent; their hash must be the receipt's inputHash. */
  readonly inputs?: TensorMap;
  /** The outputs received; their hash must be the receipt's outputHash. */
  readonly outputs?: TensorMap;
  /**
   * The keccak256 of `inputs` and `outputs`' canonical encodings when the caller has them already
   * (it hashed the bytes it sent or received): they are compared instead of hashing a large tensor
   * twice.
   */
  readonly hashes?: { readonly inputs?: Hex; readonly outputs?: Hex };
  /** The model's output schema: the outputs must be exactly these names and dtypes. */
  readonly outputSpecs?: readonly TensorSpec[];
  /** Whether a trace was asked for (then traceRoot must not be zero). */
  readonly trace?: boolean;
  /** The provider as discovered (stake, active, effective price); read from the chain if absent. */
  readonly quote?: ProviderCandidate;
  /**
   * When the request was sent (ms): the receipt's timestamp must fall between it and now, with
   * `RECEIPT_CLOCK_SKEW_MS` of slack. A backdated receipt would leave the challenge window early.
   */
  readonly sentAtMs?: number;
};

/** How far a provider's clock may be from the client's. */
export const RECEIPT_CLOCK_SKEW_MS = 5 * 60_000;

const short = (h: string) => (h.length > 14 ? `${h.slice(0, 10)}…${h.slice(-4)}` : h);

/**
 * Verifies a signed receipt against what was asked and what came back, and against the chain:
 * signature, the signer is a key the provider registered, the provider is registered, active and
 * staked, the model id, request id and client match, inputHash and outputHash recomputed, no
 * params, price within the quote and the cap, runtime profile known. Never throws for a bad
 * receipt: every failure is a check with `ok: false` and the reason.
 */
export async function verifyReceipt(client: Client, params: VerifyReceiptParameters): Promise<ReceiptReport> {
  const r = params.receipt.receipt;
  const { checks, push, quote, expectedProvider } = await identityChecks(client, params);
  push(
    'params',
    r.paramsHash === ZERO_HASH,
    r.paramsHash === ZERO_HASH
      ? 'no parameters'
      : `paramsHash ${short(r.paramsHash)} is not zero, but the request had no parameters`,
  );

  // hashes recomputed
  const hashCheck = (
    check: 'inputHash' | 'outputHash',
    tensors: TensorMap,
    known: Hex | undefined,
    what: string,
  ) => {
    const h = known ?? hashTensors(tensors);
    const claimed = r[check];
    push(
      check,
      h === claimed,
      h === claimed
        ? `${check} ${short(h)} recomputed from the ${what}`
        : `receipt ${check} ${short(claimed)} is not the hash of the ${what} (${short(h)})`,
    );
  };
  if (params.inputs) hashCheck('inputHash', params.inputs, params.hashes?.inputs, 'inputs sent');
  if (params.outputs) {
    hashCheck('outputHash', params.outputs, params.hashes?.outputs, 'outputs received');
    if (params.outputSpecs) {
      const problem = outputsProblem(params.outputSpecs, params.outputs);
      push('outputs', problem === undefined, problem ?? 'outputs match the model output schema');
    }
  }

  // price
  const priceProblems: string[] = [];
  if (params.maxPrice !== undefined && r.price > params.maxPrice)
    priceProblems.push(`price ${r.price} is above maxPrice ${params.maxPrice}`);
  if (quote && r.price > quote.price)
    priceProblems.push(`price ${r.price} is above the provider's effective offer ${quote.price}`);
  if (!quote) priceProblems.push('no quote to compare the price with');
  push(
    'price',
    priceProblems.length === 0,
    priceProblems.length === 0
      ? `price ${r.price} <= quote ${quote?.price}${params.maxPrice === undefined ? '' : ` and <= maxPrice ${params.maxPrice}`}`
      : priceProblems.join('; '),
    !quote && priceProblems.length === 1, // only the quote was missing: a read that failed
  );

  await profileChecks(client, {
    receipt: params.receipt,
    expectedProvider,
    quote,
    push,
    ...(params.sentAtMs === undefined ? {} : { sentAtMs: params.sentAtMs }),
  });
  if (params.trace)
    push(
      'trace',
      r.traceRoot !== ZERO_HASH,
      r.traceRoot !== ZERO_HASH
        ? `trace root ${short(r.traceRoot)}`
        : 'a trace was asked for but traceRoot is zero',
    );
  return {
    provider: expectedProvider,
    requestId: r.requestId,
    ok: checks.every((c) => c.ok),
    checks,
    receipt: params.receipt,
  };
}

/** How a check is recorded: `unknown` when it could not be done (a chain read failed). */
export type PushCheck = (check: CheckName, ok: boolean, detail: string, unknown?: boolean) => void;

/** What every receipt is checked against, whatever it answers (a tensor inference, an LLM generation). */
export type ReceiptIdentity = {
  readonly receipt: SignedReceipt;
  readonly model: string;
  readonly requestId: Hex;
  readonly provider?: Address;
  readonly quote?: ProviderCandidate;
};

/**
 * The checks every receipt goes through first: its signature, its signer is a key its provider
 * registered, the provider is the one asked and is registered, active and staked, and the model,
 * request id and client are the ones of the request. Returns the checks so far (for the caller's
 * own to follow) and the provider's quote (read from the chain when not given).
 */
export async function identityChecks(
  client: Client,
  params: ReceiptIdentity,
): Promise<{
  checks: Check[];
  push: PushCheck;
  quote: ProviderCandidate | undefined;
  expectedProvider: Address;
}> {
  const r = params.receipt.receipt;
  const checks: Check[] = [];
  const push: PushCheck = (check, ok, detail, unknown = false) =>
    checks.push({ check, ok, detail, ...(unknown ? { unknown: true as const } : {}) });
  const expectedProvider = getAddress(params.provider ?? r.provider);

  // signature and signer
  let signer: Address | undefined;
  // The chain recovers only canonical signatures (ReceiptLedger.recoverSigner returns 0 for the
  // rest): a receipt signed otherwise could back no challenge or equivocation report (audit L-8).
  const problem = signatureProblem(params.receipt.signature);
  if (problem) push('signature', false, `not canonical, so the chain would not recover it: ${problem}`);
  else
    try {
      signer = await recoverReceiptSigner(params.receipt, {
        chainId: client.chainId,
        verifyingContract: client.deployment.contracts.receiptLedger,
      });
      push('signature', true, `recovers to ${signer}`);
    } catch (error) {
      push('signature', false, isGlassboxError(error) ? error.shortMessage : String(error));
    }
  if (signer !== undefined) {
    const key = `${r.provider.toLowerCase()}:${signer.toLowerCase()}`;
    let registered = client.state.signers.has(key);
    let detail: string;
    let unknown = false;
    if (!registered) {
      try {
        registered = await isProviderSigner(client.chain, { provider: r.provider, key: signer });
        // A key stays bound to its provider after rotation, so a yes is final and can be cached.
        if (registered) client.state.signers.add(key);
        detail = registered
          ? `${signer} is a signing key of ${r.provider}`
          : `${signer} is not a signing key registered by ${r.provider}`;
      } catch (error) {
        unknown = true;
        detail = `could not check the signing key on chain: ${isGlassboxError(error) ? error.shortMessage : String(error)}`;
      }
    } else detail = `${signer} is a signing key of ${r.provider}`;
    push('signer', registered, detail, unknown);
  } else push('signer', false, 'no signer: the signature does not recover');

  // provider: the one asked, registered, active and staked
  let quote = params.quote;
  if (!isAddressEqual(r.provider, expectedProvider)) {
    push('provider', false, `the receipt names provider ${r.provider}, but ${expectedProvider} was asked`);
  } else {
    if (!quote) quote = await readQuote(client, expectedProvider, params.model).catch(() => undefined);
    if (!quote) push('provider', false, `could not read provider ${expectedProvider} from the chain`, true);
    else if (!quote.registered) push('provider', false, `${expectedProvider} is not a registered provider`);
    else if (!quote.active)
      push('provider', false, `${expectedProvider} is not active (paused, or staked below the minimum)`);
    else push('provider', true, `${expectedProvider} is registered and active with stake ${quote.stake}`);
  }

  // model, request, client
  let digest: Hex | undefined;
  try {
    digest = modelDigest(params.model);
  } catch {
    digest = undefined;
  }
  push(
    'model',
    digest !== undefined && r.model.toLowerCase() === digest.toLowerCase(),
    digest === undefined
      ? `${params.model} is not a model id`
      : r.model.toLowerCase() === digest.toLowerCase()
        ? `model digest ${short(digest)}`
        : `receipt model ${short(r.model)} is not ${params.model} (${short(digest)})`,
  );
  push(
    'request',
    r.requestId.toLowerCase() === params.requestId.toLowerCase(),
    r.requestId.toLowerCase() === params.requestId.toLowerCase()
      ? `request id ${short(r.requestId)}`
      : `receipt request id ${short(r.requestId)} is not the one sent (${short(params.requestId)})`,
  );
  push(
    'client',
    isAddressEqual(r.client, client.address),
    isAddressEqual(r.client, client.address)
      ? `client ${client.address}`
      : `receipt client ${r.client} is not this client (${client.address})`,
  );
  return { checks, push, quote, expectedProvider };
}

/**
 * The checks every receipt goes through last: its runtime profile is admitted on chain and declared
 * by its provider, and (when the send time is known) its timestamp is the time of the request.
 */
export async function profileChecks(
  client: Client,
  p: {
    readonly receipt: SignedReceipt;
    readonly expectedProvider: Address;
    readonly quote: ProviderCandidate | undefined;
    readonly push: PushCheck;
    readonly sentAtMs?: number;
  },
): Promise<void> {
  const r = p.receipt.receipt;
  const { push, quote, expectedProvider } = p;
  // runtime profile
  const [runtimeOk, runtimeDetail, runtimeUnknown] = await runtimeCheck(
    client,
    r.runtime,
    expectedProvider,
    quote,
  );
  push('runtime', runtimeOk, runtimeDetail, runtimeUnknown === true || (!quote && !runtimeOk));
  if (p.sentAtMs !== undefined) {
    const at = Number(r.timestamp);
    const ok = at >= p.sentAtMs - RECEIPT_CLOCK_SKEW_MS && at <= Date.now() + RECEIPT_CLOCK_SKEW_MS;
    push(
      'timestamp',
      ok,
      ok
        ? `timestamp ${new Date(at).toISOString()} is the time of the request`
        : `timestamp ${at} is not the time of the request (sent at ${p.sentAtMs}): a backdated receipt leaves the challenge window early`,
    );
  }
}

/**
 * The runtime profile a receipt names must be one the chain admitted (verifiers and committee
 * members run it, so the answer can be checked and judged) and the one its provider declared on
 * chain; the client's allow-list, when it has one, narrows it further (audit C-3).
 */
async function runtimeCheck(
  client: Client,
  runtime: Hex,
  provider: Address,
  quote: ProviderCandidate | undefined,
): Promise<[ok: boolean, detail: string, unknown?: true]> {
  const allow = client.options.runtimes;
  if (allow && !allow.some((h) => h.toLowerCase() === runtime.toLowerCase()))
    return [false, `runtime ${short(runtime)} is not in the allow-list`];
  if (!quote) return [false, `no on-chain record of ${provider} to compare the runtime with`];
  if (!quote.runtimes.some((r) => r.toLowerCase() === runtime.toLowerCase()))
    return [
      false,
      `runtime ${short(runtime)} is not among the profiles ${provider} declared on chain (${quote.runtimes.map(short).join(', ') || 'none'})`,
    ];
  let admitted = client.state.admittedRuntimes.has(runtime.toLowerCase());
  if (!admitted) {
    try {
      admitted = await isRuntimeAdmitted(client.chain, runtime);
    } catch (error) {
      return [
        false,
        `could not check runtime ${short(runtime)} on chain: ${isGlassboxError(error) ? error.shortMessage : String(error)}`,
        true,
      ];
    }
    // admissions are never undone, so a yes is final
    if (admitted) client.state.admittedRuntimes.add(runtime.toLowerCase());
  }
  return admitted
    ? [true, `runtime ${short(runtime)} is admitted on chain and declared by ${provider}`]
    : [
        false,
        `runtime ${short(runtime)} was never admitted on chain: no verifier or committee runs it, so nobody could check this answer`,
      ];
}

function outputsProblem(specs: readonly TensorSpec[], outputs: TensorMap): string | undefined {
  const names = Object.keys(outputs).sort();
  const declared = specs.map((s) => s.name).sort();
  if (names.join('\0') !== declared.join('\0'))
    return `outputs are [${names.join(', ')}], but the model declares [${declared.join(', ')}]`;
  for (const spec of specs) {
    const t = outputs[spec.name]!;
    if (t.dtype !== spec.dtype)
      return `output ${spec.name} is ${t.dtype}, but the model declares ${spec.dtype}`;
    if (t.shape.length !== spec.shape.length)
      return `output ${spec.name} has rank ${t.shape.length}, but the model declares ${spec.shape.length}`;
    const bad = spec.shape.findIndex((d, i) => typeof d === 'number' && d !== t.shape[i]);
    if (bad >= 0)
      return `output ${spec.name} dim ${bad} is ${t.shape[bad]}, but the model declares ${spec.shape[bad]}`;
  }
  return undefined;
}

/** A provider's /v1/models, cached for the discovery TTL. */
export function getProviderModels(
  client: Client,
  provider: { address: Address; endpoint: string },
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<ProviderModels> {
  const now = Date.now();
  const cached = client.state.models.get(provider.address);
  if (cached && now - cached.at < client.options.discoveryTtlMs) return cached.value;
  const value = getModels(client, provider, options);
  client.state.models.set(provider.address, { at: now, value });
  value.catch(() => {
    if (client.state.models.get(provider.address)?.value === value)
      client.state.models.delete(provider.address);
  });
  return value;
}

async function readQuote(client: Client, provider: Address, model: string): Promise<ProviderCandidate> {
  const [info, offer] = await Promise.all([
    getProvider(client.chain, provider),
    getOffer(client.chain, { provider, model }),
  ]);
  return {
    address: provider,
    endpoint: info.endpoint,
    signer: info.signer,
    stake: info.stake,
    registered: info.registered,
    paused: info.paused,
    active: info.active && offer.active,
    runtimes: info.runtimes,
    price: offer.price,
    inputPrice: offer.inputPrice,
    pending: offer.pending,
  };
}
