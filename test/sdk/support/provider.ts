import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { getAddress, keccak256, toHex, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import {
  getOffer,
  redeemVoucher,
  registerProvider,
  setOffer,
  setRuntimes,
  type GlassboxClient,
} from '../../../src/chain/index.js';
import {
  PROVIDER_HEADER,
  inferRequestSchema,
  parseWire,
  signedVoucherJsonSchema,
  voucherFromJson,
  type InferResponse,
  type ModelsResponse,
} from '../../../src/protocol/api.js';
import { hashTensors, tensorsToJson } from '../../../src/protocol/encoding.js';
import { GlassboxError, isGlassboxError } from '../../../src/protocol/errors.js';
import { inputsFromJson } from '../../../src/protocol/inputs.js';
import { modelDigest, type ModelPackage } from '../../../src/protocol/manifest.js';
import { signReceipt, signedReceiptToJson, ZERO_HASH, type Receipt } from '../../../src/protocol/receipt.js';
import { requestMessage, verifyRequestSignature } from '../../../src/protocol/request.js';
import type { Tensor, TensorMap } from '../../../src/protocol/tensor.js';
import { recoverVoucherSigner, type SignedVoucher } from '../../../src/protocol/voucher.js';
import type { TensorEngine } from '../../../src/runtime/index.js';
import type { BlobStore } from '../../../src/store/index.js';
import { exampleEngine } from '../../support/examples.js';

/*
 * A small provider that follows src/protocol/api.ts, for the SDK's tests until src/node lands:
 * real onnxruntime engine, real store, real EIP-712 receipts signed by a registered key, real
 * vouchers checked and redeemed on the real chain, the client's signature on each request checked.
 * Fault switches make it slow, perturb its outputs, overcharge, or ask to be paid (402) past a
 * small credit limit.
 */

export type Faults = {
  /** Wait this long before answering /v1/infer. */
  delayMs?: number;
  /**
   * Sign receipts under this runtime profile hash instead of the engine's (which it still declares
   * on chain): a provider claiming a profile nobody else runs, to escape re-execution.
   */
  runtime?: Hex;
  /** Perturb the first output element: 'fixed' always the same way, 'random' differently each time. */
  perturb?: 'fixed' | 'random';
  /** Charge this instead of the chain's effective price. */
  chargePrice?: bigint;
  /** Delivered but unpaid amount above which it answers 402 (default: unlimited). */
  creditLimit?: bigint;
  /** Take vouchers only from POST /v1/vouchers, not from /v1/infer requests. */
  ignoreAttachedVouchers?: boolean;
  /** Answer /v1/infer with this instead of its signed answer (garbage, an oversized body…). */
  answer?: (signed: InferResponse) => unknown;
};

export type TestProvider = {
  readonly address: Address;
  readonly signer: Address;
  readonly url: string;
  readonly faults: Faults;
  /** Sum of the prices of receipts it answered with. */
  delivered(): bigint;
  /** The latest voucher it accepted. */
  latestVoucher(): SignedVoucher | undefined;
  /** Requests it answered with 402. */
  paymentRequests(): number;
  /** Requests it received on /v1/infer. */
  requests(): number;
  /** Redeems its latest voucher on chain; returns what was paid. */
  redeem(): Promise<bigint>;
  stop(): Promise<void>;
};

export type StartTestProviderParameters = {
  /** The chain client acting as the provider's staking account. */
  readonly chain: GlassboxClient;
  readonly store: BlobStore;
  readonly models: readonly ModelPackage[];
  readonly price: bigint;
  readonly stake: bigint;
  readonly faults?: Faults;
  readonly engine?: TensorEngine;
  /** The loopback port to listen on (default: a free one). */
  readonly port?: number;
};

export async function startTestProvider(params: StartTestProviderParameters): Promise<TestProvider> {
  const address = getAddress(params.chain.walletClient!.account.address);
  const signerKey = keccak256(toHex(`signer:${address}`));
  const signer = privateKeyToAccount(signerKey);
  const engine = params.engine ?? exampleEngine();
  const faults: Faults = { ...params.faults };
  const models = new Map(params.models.map((m) => [m.id as string, m]));
  const domain = {
    chainId: params.chain.chainId,
    verifyingContract: params.chain.deployment.contracts.receiptLedger,
  };
  const voucherDomain = {
    chainId: params.chain.chainId,
    verifyingContract: params.chain.deployment.contracts.paymentEscrow,
  };
  let delivered = 0n;
  let latest: SignedVoucher | undefined;
  let paymentRequests = 0;
  let requests = 0;
  let counter = 0;
  let stopped = false;

  const app: FastifyInstance = Fastify({ bodyLimit: 8 * 1024 * 1024, forceCloseConnections: true });
  app.addHook('onRequest', async (_request, reply) => {
    reply.header(PROVIDER_HEADER, address);
  });
  app.setErrorHandler((error, _request, reply) => {
    if (isGlassboxError(error)) {
      const status =
        error.code === 'PAYMENT_REQUIRED'
          ? 402
          : error.code === 'MODEL_NOT_FOUND' || error.code === 'NOT_FOUND' || error.code === 'BLOB_NOT_FOUND'
            ? 404
            : error.code === 'SIGNATURE_INVALID' && error.field === 'signature'
              ? 401
              : 400;
      return reply.status(status).type('application/problem+json').send(error.toProblem());
    }
    return reply.status(500).send({ code: 'RUN_FAILED', message: String(error) });
  });

  const acceptVoucher = async (json: unknown) => {
    const signed = voucherFromJson(parseWire(signedVoucherJsonSchema, json, 'voucher'));
    const from = await recoverVoucherSigner(signed, voucherDomain);
    if (
      getAddress(from) !== getAddress(signed.voucher.client) ||
      getAddress(signed.voucher.provider) !== address
    )
      throw new GlassboxError(
        'SIGNATURE_INVALID',
        'the voucher is not signed by its client for this provider',
        {
          field: 'voucher.signature',
        },
      );
    if (!latest || signed.voucher.amount > latest.voucher.amount) latest = signed;
    return signed;
  };
  const paid = () => latest?.voucher.amount ?? 0n;

  app.get('/health', async () => ({ ok: true }));
  app.get('/v1/models', async (): Promise<ModelsResponse> => {
    const served = await Promise.all(
      [...models.values()].map(async (m) => {
        const offer = await getOffer(params.chain, { provider: address, model: m.id });
        return {
          id: m.id,
          name: m.manifest.name,
          version: m.manifest.version,
          inputs: m.manifest.inputs,
          outputs: m.manifest.outputs,
          policy: m.manifest.policy,
          price: offer.price.toString(),
          inputPrice: offer.inputPrice.toString(),
        };
      }),
    );
    return {
      provider: address,
      signer: signer.address,
      chainId: params.chain.chainId,
      runtime: engine.runtimeHash,
      profile: engine.profile,
      models: served,
    };
  });
  app.get('/v1/blobs/:cid', async (request, reply) => {
    const { cid } = request.params as { cid: string };
    const bytes = await params.store.get(cid);
    return reply.type('application/octet-stream').send(Buffer.from(bytes));
  });
  app.post('/v1/vouchers', async (request) => {
    await acceptVoucher(request.body);
    return { amount: paid().toString(), owed: (delivered - paid()).toString() };
  });
  app.post('/v1/infer', async (request): Promise<unknown> => {
    requests++;
    const body = parseWire(inferRequestSchema, request.body, 'request');
    const pkg = models.get(body.model);
    if (!pkg) throw new GlassboxError('MODEL_NOT_FOUND', `model ${body.model} is not served here`);
    const inputs = inputsFromJson(pkg.manifest.inputs, body.inputs);
    // Like the node: the client must prove it sent the request before anything else.
    await verifyRequestSignature(
      requestMessage(body, { provider: address, inputHash: hashTensors(inputs) }),
      body.signature as Hex,
      domain,
    );
    if (body.voucher && !faults.ignoreAttachedVouchers) await acceptVoucher(body.voucher);
    const price =
      faults.chargePrice ?? (await getOffer(params.chain, { provider: address, model: body.model })).price;
    if (faults.chargePrice === undefined && price > BigInt(body.maxPrice))
      throw new GlassboxError('PRICE_TOO_HIGH', `price ${price} is above maxPrice ${body.maxPrice}`);
    const owed = delivered - paid();
    if (faults.creditLimit !== undefined && owed + price > faults.creditLimit) {
      paymentRequests++;
      throw new GlassboxError('PAYMENT_REQUIRED', `owed ${owed}; pay before more`, {
        details: { owed: owed.toString() },
      });
    }
    const result = await engine.run(pkg, inputs, { trace: body.trace === true });
    const outputs = faults.perturb
      ? perturb(result.outputs, faults.perturb === 'random' ? 1000 + ++counter : 1)
      : result.outputs;
    if (faults.delayMs) await new Promise((r) => setTimeout(r, faults.delayMs));
    const receipt: Receipt = {
      requestId: body.requestId as Hex,
      provider: address,
      client: getAddress(body.client),
      model: pkg.id === body.model ? modelDigestOf(pkg) : ZERO_HASH,
      inputHash: result.inputHash,
      outputHash: faults.perturb ? hashOutputs(outputs) : result.outputHash,
      paramsHash: ZERO_HASH,
      runtime: faults.runtime ?? result.runtime,
      traceRoot: result.traceRoot,
      price,
      timestamp: BigInt(Date.now()),
    };
    const signed = await signReceipt(signer, receipt, domain);
    delivered += price;
    const answer: InferResponse = { outputs: tensorsToJson(outputs), receipt: signedReceiptToJson(signed) };
    return faults.answer ? faults.answer(answer) : answer;
  });

  await app.listen({ host: '127.0.0.1', port: params.port ?? 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  await registerProvider(params.chain, { endpoint: url, signer: signer.address, stake: params.stake });
  await setRuntimes(params.chain, [engine.runtimeHash]); // admitted by the test chain

  for (const m of params.models) await setOffer(params.chain, { model: m.id, price: params.price });

  return {
    address,
    signer: signer.address,
    url,
    faults,
    delivered: () => delivered,
    latestVoucher: () => latest,
    paymentRequests: () => paymentRequests,
    requests: () => requests,
    redeem: async () => (latest ? (await redeemVoucher(params.chain, latest)).paid : 0n),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await app.close();
      if (!params.engine) await engine.close();
    },
  };
}

function modelDigestOf(pkg: ModelPackage): Hex {
  return modelDigest(pkg.id);
}

function hashOutputs(outputs: TensorMap): Hex {
  return hashTensors(outputs);
}

/** Adds `by` to the first element of the first numeric output (a consistent, signed lie). */
function perturb(outputs: TensorMap, by: number): TensorMap {
  const out: Record<string, Tensor> = { ...outputs };
  const name = Object.keys(outputs).sort()[0]!;
  const t = outputs[name]!;
  if (t.dtype === 'string') return outputs;
  const data = t.data.slice() as typeof t.data;
  if (typeof data[0] === 'bigint') (data as BigInt64Array)[0]! += BigInt(by);
  else (data as Float32Array)[0]! += by;
  out[name] = { ...t, data } as Tensor;
  return out;
}
