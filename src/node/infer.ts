import type { Logger } from 'pino';
import type { Address, Hex, LocalAccount } from 'viem';
import type { InferHead } from '../protocol/api.js';
import { decodeTensors, encodeTensors } from '../protocol/encoding.js';
import { GlassboxError } from '../protocol/errors.js';
import { capInValues } from '../protocol/limits.js';
import { dataHash } from '../protocol/data.js';
import { modelDigest, type ModelPackage } from '../protocol/manifest.js';
import { requestMessage, verifyRequestSignature } from '../protocol/request.js';
import {
  receiptHash,
  signReceipt,
  signedReceiptToJson,
  ZERO_HASH,
  type Receipt,
  type ReceiptDomain,
  type SignedReceiptJson,
} from '../protocol/receipt.js';
import type { TensorMap } from '../protocol/tensor.js';
import type { Engines } from '../runtime/registry.js';
import type { NodeDb } from './db.js';
import type { GroupCommit } from './group-commit.js';
import type { NodeMetrics } from './metrics.js';
import type { Payments } from './payments.js';
import type { PriceBook } from './prices.js';

/*
 * One inference, transport aside (JSON and binary routes both end here). First `authenticate`:
 * find the model, decode the inputs and check the client's signature over the request (so that
 * nothing is charged to, counted against or rate-limited as an address that did not ask). Then
 * `infer`: the voucher, the price and the client's credit; run; sign a receipt; persist it with the
 * inputs and outputs; answer. The receipt is committed to the database and synced to disk (the
 * WAL's fsync shared with concurrent requests: src/node/group-commit.ts) before this returns, so an
 * answer a client saw is never lost by a crash.
 *
 * onnxruntime-node runs a session synchronously on the main thread: while a model runs, the event
 * loop waits. The example models run in well under a millisecond; large models would need a worker
 * pool (one onnxruntime instance per worker process) to keep /health and /metrics responsive.
 */

export type InferAnswer = {
  readonly outputs: TensorMap;
  /** Their canonical encoding (what the binary transport sends). */
  readonly outputBytes: Uint8Array;
  readonly receipt: SignedReceiptJson;
  /** True when this request id was answered before and the stored answer is returned again. */
  readonly replayed: boolean;
};

/** A request whose signature recovers to its client: only these are served. */
export type ProvenRequest = {
  readonly head: InferHead;
  readonly pkg: ModelPackage;
  readonly inputs: TensorMap;
  /** The inputs' canonical encoding (what is stored and, if challenged, published). */
  readonly inputBytes: Uint8Array;
  readonly inputHash: Hex;
  /** The client, proven by the request's signature. */
  readonly client: Address;
};

export type InferService = {
  /**
   * Finds the model, decodes the inputs and proves the client: NOT_FOUND, the input errors, or
   * SIGNATURE_INVALID (field `signature`) when the signature is not the named client's over
   * exactly this request to this provider.
   */
  authenticate(head: InferHead, inputs: (pkg: ModelPackage) => ReadInputs): Promise<ProvenRequest>;
  infer(request: ProvenRequest): Promise<InferAnswer>;
};

/**
 * A request's inputs as its transport gave them: decoded tensors, and their canonical encoding when
 * they came as one (binary: the body, which decoding checked is canonical), so that it is not
 * encoded again.
 */
export type ReadInputs = { readonly tensors: TensorMap; readonly bytes?: Uint8Array };

export type InferServiceParameters = {
  readonly db: NodeDb;
  /** Where receipts are written: each answer waits until its receipt is committed and synced. */
  readonly receipts: GroupCommit;
  readonly engines: Engines;
  readonly models: ReadonlyMap<string, ModelPackage>;
  readonly prices: PriceBook;
  readonly payments: Payments;
  readonly signer: LocalAccount;
  readonly provider: Address;
  /** The domain of receipts, and of the requests they answer. */
  readonly domain: ReceiptDomain;
  readonly metrics: NodeMetrics;
  readonly log: Logger;
  readonly runTimeoutMs: number;
  /**
   * The most inputs plus outputs (canonical encodings, bytes) a receipt may carry: what this
   * provider can publish on chain if its data is challenged (src/protocol/limits.ts). Known once
   * the node has read the chain.
   */
  readonly dataCap: () => number;
  /** Called after each persisted receipt (the batch committer listens). */
  readonly onReceipt?: () => void;
};

export function createInferService(p: InferServiceParameters): InferService {
  async function authenticate(
    head: InferHead,
    readInputs: (pkg: ModelPackage) => ReadInputs,
  ): Promise<ProvenRequest> {
    const pkg = p.models.get(head.model);
    if (!pkg)
      throw new GlassboxError('NOT_FOUND', `model ${head.model} is not served by this provider`, {
        field: 'model',
        details: { served: [...p.models.keys()] },
      });
    const { tensors: inputs, bytes } = readInputs(pkg);
    const inputBytes = bytes ?? encodeTensors(inputs);
    const cap = p.dataCap();
    if (inputBytes.byteLength > cap)
      throw dataTooLarge('INPUT_TOO_LARGE', 'inputs', inputBytes.byteLength, cap, [inputs]);
    const inputHash = dataHash(inputBytes);
    const message = requestMessage(head, { provider: p.provider, inputHash });
    const client = await verifyRequestSignature(message, head.signature as Hex, p.domain);
    return { head, pkg, inputs, inputBytes, inputHash, client };
  }

  async function infer(request: ProvenRequest): Promise<InferAnswer> {
    const { head, pkg, inputs, inputBytes, inputHash, client } = request;
    const cap = p.dataCap();
    const requestId = head.requestId.toLowerCase() as Hex;
    if (head.voucher) await p.payments.acceptVoucher(head.voucher, client);

    const previous = p.db.getReceipt(requestId);
    if (previous) return replay(previous, client, pkg, inputHash);

    // A tensor model is priced per inference (`inputPrice` is 0 for it).
    const { price } = await p.prices.price(pkg.id);
    if (price > BigInt(head.maxPrice))
      throw new GlassboxError(
        'PRICE_TOO_HIGH',
        `the price for ${pkg.id} is ${price}, above maxPrice ${head.maxPrice}`,
        {
          field: 'maxPrice',
          details: { price: price.toString(), maxPrice: head.maxPrice },
        },
      );
    const release = await p.payments.reserve(client, price);
    try {
      const result = await p.engines.for(pkg, { trace: head.trace === true }).run(pkg, inputs, {
        trace: head.trace === true,
        timeoutMs: p.runTimeoutMs,
        inputHash,
      });
      p.metrics.inference.observe({ model: pkg.id }, result.durationMs / 1000);
      const { outputs, outputHash, trace } = result;
      const outputBytes = encodeTensors(outputs);
      if (inputBytes.byteLength + outputBytes.byteLength > cap)
        throw dataTooLarge(
          'OUTPUT_TOO_LARGE',
          'outputs',
          inputBytes.byteLength + outputBytes.byteLength,
          cap,
          [inputs, outputs],
        );
      const receipt: Receipt = {
        requestId,
        provider: p.provider,
        client,
        model: modelDigest(pkg.id),
        inputHash: result.inputHash,
        outputHash,
        paramsHash: ZERO_HASH,
        runtime: result.runtime,
        traceRoot: result.traceRoot,
        price,
        timestamp: BigInt(Date.now()),
      };
      const signed = signedReceiptToJson(await signReceipt(p.signer, receipt, p.domain));
      try {
        await p.receipts.record({
          requestId,
          client,
          model: pkg.id,
          inputHash: result.inputHash,
          leaf: receiptHash(receipt),
          receipt: signed,
          price,
          createdAt: Date.now(),
          inputs: inputBytes,
          outputs: outputBytes,
          ...(trace ? { trace: trace.steps.map((step) => step.hash) } : {}),
        });
      } catch (error) {
        // Two requests with one id raced: the other was stored first.
        if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
          const stored = p.db.getReceipt(requestId);
          if (stored) return replay(stored, client, pkg, inputHash);
        }
        throw error;
      }
      p.metrics.receipts.inc({ model: pkg.id });
      p.onReceipt?.();
      return { outputs, outputBytes, receipt: signed, replayed: false };
    } finally {
      release();
    }
  }

  /** A retried request id: the same request gets the same answer (no new charge); another is refused. */
  function replay(
    stored: NonNullable<ReturnType<NodeDb['getReceipt']>>,
    client: Address,
    pkg: ModelPackage,
    inputHash: Hex,
  ): InferAnswer {
    const same = stored.client === client && stored.model === pkg.id && stored.inputHash === inputHash;
    if (!same || stored.outputs === undefined)
      throw new GlassboxError(
        'REQUEST_CONFLICT',
        same
          ? `request ${stored.requestId} was answered and its outputs pruned; use a new request id`
          : `request id ${stored.requestId} was already used for another request; use a new one`,
        { field: 'requestId' },
      );
    return {
      outputs: decodeTensors(stored.outputs),
      outputBytes: stored.outputs,
      receipt: stored.receipt,
      replayed: true,
    };
  }

  return { authenticate, infer };
}

/**
 * A receipt over more data than the chain's data cap would make this provider slashable for data
 * it could not publish (audit C-1), so such a request is refused, unsigned and unpaid. The cap is
 * also given in values when the tensors it is shared by have one dtype.
 */
function dataTooLarge(
  code: 'INPUT_TOO_LARGE' | 'OUTPUT_TOO_LARGE',
  field: 'inputs' | 'outputs',
  sizeBytes: number,
  limitBytes: number,
  tensors: readonly TensorMap[],
): GlassboxError {
  const what = field === 'inputs' ? 'the inputs' : 'the inputs and outputs';
  const inValues = capInValues(
    limitBytes,
    tensors.flatMap((map) => Object.values(map).map((t) => t.dtype)),
  );
  const values = inValues ? ` (about ${inValues.values} ${inValues.dtype} values)` : '';
  return new GlassboxError(
    code,
    `${what} take ${sizeBytes} bytes in canonical encoding; a receipt may carry at most ${limitBytes} bytes${values} of inputs and outputs (the chain's data cap: what a provider can publish on chain if the data is challenged)`,
    {
      field,
      details: { sizeBytes, limitBytes, ...(inValues ? { limitValues: inValues.values } : {}) },
    },
  );
}
