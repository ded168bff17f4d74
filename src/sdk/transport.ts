import { getAddress, isAddress, isHex, type Address, type Hex } from 'viem';
import {
  inferResponseSchema,
  parseWire,
  voucherToJson,
  type InferRequest,
  type ModelsResponse,
  type VoucherAccepted,
} from '../protocol/api.js';
import { ErrorCodes, GlassboxError, isGlassboxError, type ErrorCode } from '../protocol/errors.js';
import { runtimeHash, runtimeProfileSchema, type RuntimeProfile } from '../protocol/runtime-profile.js';
import type { SignedReceipt } from '../protocol/receipt.js';
import type { SignedVoucher } from '../protocol/voucher.js';
import type { Client } from './client.js';

/*
 * HTTP to providers, following src/protocol/api.ts. Every failure is a GlassboxError naming the
 * provider: PROVIDER_UNAVAILABLE (connection refused, reset, DNS), PROVIDER_TIMEOUT, the provider's
 * own problem+json code when it sends a known one (PAYMENT_REQUIRED, PRICE_TOO_HIGH, INPUT_*...),
 * and PROVIDER_ERROR for anything else (5xx without a code, a body that does not follow the API).
 */

export type ProviderRef = { readonly address: Address; readonly endpoint: string };

type RequestOptions = {
  readonly method?: 'GET' | 'POST';
  readonly body?: unknown;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
};

function url(provider: ProviderRef, path: string): string {
  return `${provider.endpoint.replace(/\/+$/, '')}${path}`;
}

async function request(
  client: Client,
  provider: ProviderRef,
  path: string,
  options: RequestOptions = {},
): Promise<Response> {
  const timeoutMs = options.timeoutMs ?? client.options.timeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const details = { provider: provider.address, endpoint: provider.endpoint, path };
  try {
    return await client.options.fetch(url(provider, path), {
      method: options.method ?? 'GET',
      headers: {
        ...client.options.headers,
        accept: 'application/json',
        ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      signal,
    });
  } catch (cause) {
    if (timeout.aborted && !options.signal?.aborted)
      throw new GlassboxError(
        'PROVIDER_TIMEOUT',
        `provider ${provider.address} did not answer in ${timeoutMs} ms`,
        {
          details: { ...details, timeoutMs },
          cause,
        },
      );
    if (options.signal?.aborted) throw abortError(provider, cause);
    throw new GlassboxError('PROVIDER_UNAVAILABLE', `provider ${provider.address} could not be reached`, {
      metaMessages: [`${provider.endpoint}: ${describeCause(cause)}`],
      details,
      cause,
    });
  }
}

function abortError(provider: ProviderRef, cause: unknown): GlassboxError {
  return new GlassboxError('PROVIDER_UNAVAILABLE', `the request to ${provider.address} was cancelled`, {
    details: { provider: provider.address, aborted: true },
    cause,
  });
}

function describeCause(cause: unknown): string {
  // undici wraps the socket error (TypeError: fetch failed, cause: {code}); node:http throws it as is.
  const outer = cause as { code?: unknown; cause?: { code?: string; message?: string } } | undefined;
  const inner = outer?.cause;
  if (typeof outer?.code === 'string') return outer.code;
  return inner?.code ?? inner?.message ?? (cause instanceof Error ? cause.message : String(cause));
}

/** Reads a JSON body; a non-2xx answer becomes the GlassboxError its problem+json names. */
async function readJson(provider: ProviderRef, response: Response, signal?: AbortSignal): Promise<unknown> {
  let text: string;
  try {
    text = await response.text();
  } catch (cause) {
    if (signal?.aborted) throw abortError(provider, cause);
    throw new GlassboxError('PROVIDER_ERROR', `provider ${provider.address} broke off its answer`, {
      details: { provider: provider.address, status: response.status },
      cause,
    });
  }
  let body: unknown;
  try {
    body = text.length === 0 ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (response.ok) {
    if (body === undefined)
      throw new GlassboxError(
        'PROVIDER_ERROR',
        `provider ${provider.address} answered a body that is not JSON`,
        {
          details: { provider: provider.address, status: response.status },
        },
      );
    return body;
  }
  const problem = (body ?? {}) as { code?: unknown; message?: unknown; field?: unknown; details?: unknown };
  const known = typeof problem.code === 'string' && problem.code in ErrorCodes;
  const code: ErrorCode = known ? (problem.code as ErrorCode) : 'PROVIDER_ERROR';
  const message = typeof problem.message === 'string' ? problem.message : text.slice(0, 200);
  return Promise.reject(
    new GlassboxError(code, `provider ${provider.address} answered ${response.status}: ${message}`, {
      ...(typeof problem.field === 'string' ? { field: problem.field } : {}),
      details: {
        provider: provider.address,
        status: response.status,
        ...(typeof problem.details === 'object' && problem.details !== null ? problem.details : {}),
      },
    }),
  );
}

export type InferAnswer = {
  readonly outputs: unknown;
  readonly receipt: SignedReceipt;
};

/** POST /v1/infer (JSON transport). The body is validated; outputs are decoded by the caller. */
export async function postInfer(
  client: Client,
  provider: ProviderRef,
  body: InferRequest,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<InferAnswer> {
  const response = await request(client, provider, '/v1/infer', { method: 'POST', body, ...options });
  const json = await readJson(provider, response, options.signal);
  try {
    const parsed = parseWire(inferResponseSchema, json, 'response');
    // The schema already turned the receipt's integers into bigints.
    return { outputs: parsed.outputs, receipt: parsed.receipt as unknown as SignedReceipt };
  } catch (cause) {
    throw asProviderError(provider, cause);
  }
}

/** POST /v1/vouchers: hands the provider a cumulative voucher. */
export async function postVoucher(
  client: Client,
  provider: ProviderRef,
  voucher: SignedVoucher,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<VoucherAccepted> {
  const response = await request(client, provider, '/v1/vouchers', {
    method: 'POST',
    body: voucherToJson(voucher),
    ...options,
  });
  return (await readJson(provider, response, options.signal)) as VoucherAccepted;
}

/** What a provider publishes at /v1/models, with its runtime profile checked against its hash. */
export type ProviderModels = {
  readonly raw: ModelsResponse;
  readonly provider: Address;
  readonly signer: Address;
  readonly runtime: Hex;
  /** The profile, when it parses as a runtime profile and hashes to `runtime`. */
  readonly profile: RuntimeProfile | undefined;
  /** Why the profile is not usable, when it is not. */
  readonly profileProblem: string | undefined;
};

export async function getModels(
  client: Client,
  provider: ProviderRef,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<ProviderModels> {
  const response = await request(client, provider, '/v1/models', options);
  const raw = (await readJson(provider, response, options.signal)) as ModelsResponse;
  if (
    typeof raw !== 'object' ||
    raw === null ||
    !isAddress(String(raw.provider)) ||
    !isAddress(String(raw.signer)) ||
    !isHex(raw.runtime) ||
    raw.runtime.length !== 66
  )
    throw new GlassboxError(
      'PROVIDER_ERROR',
      `provider ${provider.address}: /v1/models does not follow the API`,
      {
        details: { provider: provider.address },
      },
    );
  const parsed = runtimeProfileSchema.safeParse(raw.profile);
  let profileProblem: string | undefined;
  if (!parsed.success)
    profileProblem = `its profile is not a runtime profile (${parsed.error.issues[0]?.message})`;
  else if (runtimeHash(parsed.data) !== raw.runtime)
    profileProblem = `its profile hashes to ${runtimeHash(parsed.data)}, not ${raw.runtime}`;
  return {
    raw,
    provider: getAddress(raw.provider),
    signer: getAddress(raw.signer),
    runtime: raw.runtime,
    profile: parsed.success && profileProblem === undefined ? parsed.data : undefined,
    profileProblem,
  };
}

/** GET /v1/blobs/:cid: the bytes (the caller verifies them against the CID). */
export async function getBlob(
  client: Client,
  provider: ProviderRef,
  cid: string,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<Uint8Array> {
  const response = await request(client, provider, `/v1/blobs/${encodeURIComponent(cid)}`, options);
  if (!response.ok) await readJson(provider, response, options.signal);
  return new Uint8Array(await response.arrayBuffer());
}

function asProviderError(provider: ProviderRef, cause: unknown): GlassboxError {
  const message = isGlassboxError(cause) ? cause.shortMessage : String(cause);
  return new GlassboxError(
    'PROVIDER_ERROR',
    `provider ${provider.address} answered a malformed body: ${message}`,
    {
      details: { provider: provider.address },
      cause,
    },
  );
}
