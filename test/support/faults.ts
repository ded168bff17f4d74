import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { fileURLToPath } from 'node:url';
import { isAddressEqual, type Address } from 'viem';
import type { DevnetProviderOptions } from '../../src/devnet/index.js';
import type { CreateNodeOptions, NodeConfig } from '../../src/node/index.js';
import type { AvailabilityData } from '../../src/node/roles/index.js';
import { sessionClient } from '../../src/node/routes/openai.js';
import { hashTensors } from '../../src/protocol/encoding.js';
import { GlassboxError } from '../../src/protocol/errors.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import type { Tensor, TensorMap } from '../../src/protocol/tensor.js';
import {
  createEngines,
  defaultEngines,
  traceOf,
  type TensorEngine,
  type TokenEngine,
  type Engines,
  type Trace,
} from '../../src/runtime/index.js';
import { createMemoryStore, loadModel, packModelFolder } from '../../src/store/index.js';

/*
 * FAULTS, for tests of the network's defences only: decorators that turn a normal node into a
 * lying, slow or withholding one. Production code never references them; a test builds a node with
 * `createNode(config, faultyNode(config, faults))`, and a devnet provider process runs
 * test/support/faulty-node.ts (`faultyProvider(faults)`) instead of `glassbox node start`.
 */

export type EngineFaults = {
  /**
   * The share of answers (0..1) whose outputs are changed before they are hashed and signed: the
   * first element of the first numeric output (in canonical name order), +1e-3 for floats, +1 for
   * integers, bools flip. The receipt is then a valid signature over a wrong answer: exactly what
   * quorum and disputes must catch.
   */
  readonly perturb?: number;
  /** Answer this much later (a slow provider, for hedging). */
  readonly delayMs?: number;
};

/**
 * A provider that hides its data: `inputs` serves a batch's receipts without their data (and
 * answers availability challenges on chain, hoping to dodge re-execution), `listing` serves nothing
 * of its batches but answers every challenge on chain, `batches` serves nothing of its batches and
 * answers nothing.
 */
export type Withhold = 'inputs' | 'listing' | 'batches';

/**
 * An LLM provider that swaps the model: whenever its token engine is asked for the model packed from
 * folder `model` (tiny-chat), it runs the package packed from folder `with` (tiny-chat-perturbed,
 * or -int8, whose greedy tokens often equal the real model's) instead: its weights, its tokenizer. Everything else is the real node: the offer,
 * the model id in the receipts, the sampler, the receipts' hashes over what the impostor generated.
 * What verifiers' re-checks (teacher forcing under the real weights) must catch.
 */
export type LlmSubstitution = { readonly model: string; readonly with: string };

export type NodeFaults = EngineFaults & {
  readonly withhold?: Withhold;
  readonly substitute?: LlmSubstitution;
};

/** `engine`, lying and slow as `faults` say; traceStep (a committee member's check) is left honest. */
export function withFaults(engine: TensorEngine, faults: EngineFaults): TensorEngine {
  const perturb = faults.perturb ?? 0;
  return {
    ...engine,
    async run(pkg, inputs, options) {
      let result = await engine.run(pkg, inputs, options);
      if (perturb > 0 && Math.random() < perturb) {
        const { outputs, trace } = perturbAnswer(result.outputs, result.trace);
        result = {
          ...result,
          outputs,
          outputHash: hashTensors(outputs),
          ...(trace ? { trace, traceRoot: trace.root } : {}),
        };
      }
      if (faults.delayMs) await new Promise((resolve) => setTimeout(resolve, faults.delayMs));
      return result;
    },
  };
}

/** Every engine of `engines`, with `faults`. */
export function enginesWithFaults(
  engines: Engines,
  faults: EngineFaults & Pick<NodeFaults, 'substitute'>,
): Engines {
  const { substitute } = faults;
  return createEngines(
    engines.list.map((engine) =>
      engine.kind === 'tensors'
        ? withFaults(engine, faults)
        : substitute
          ? withSubstitute(engine, substitute)
          : engine,
    ),
  );
}

/**
 * `engine`, running `substitution.with`'s package whenever it is asked for `substitution.model`'s
 * (both folders packed as the node packs them, on first use). The impostor package keeps its own
 * id, so the engine's cache of loaded models holds it apart from the real one.
 */
export function withSubstitute(engine: TokenEngine, substitution: LlmSubstitution): TokenEngine {
  let packed: Promise<{ real: string; impostor: ModelPackage }> | undefined;
  const swap = async (pkg: ModelPackage): Promise<ModelPackage> => {
    packed ??= Promise.all([packFolder(substitution.model), packFolder(substitution.with)]).then(
      ([real, impostor]) => ({ real: real.id, impostor }),
    );
    const { real, impostor } = await packed;
    return pkg.id === real ? impostor : pkg;
  };
  return {
    ...engine,
    prompt: async (pkg, prompt) => engine.prompt(await swap(pkg), prompt),
    async *generate(pkg, promptIds, options) {
      yield* engine.generate(await swap(pkg), promptIds, options);
    },
    score: async (pkg, promptIds, outputIds) => engine.score(await swap(pkg), promptIds, outputIds),
    decode: async (pkg, ids) => engine.decode(await swap(pkg), ids),
    load: async (pkg) => engine.load(await swap(pkg)),
  };
}

/** A model folder packed as `glassbox model pack` (and a node's config) packs it. */
async function packFolder(dir: string): Promise<ModelPackage> {
  const store = createMemoryStore();
  const { id } = await packModelFolder(store, dir);
  return loadModel(store, id);
}

/**
 * What the node serves, with `withhold`: a preSerialization hook takes the data out of every stored
 * receipt it answers, (`listing`, `batches`) an onRequest hook answers 404 for batch listings, and
 * (`batches`) the availability answerer finds nothing to publish.
 */
export function withholding(withhold: Withhold): Pick<CreateNodeOptions, 'extendApp' | 'availabilityData'> {
  const extendApp = (app: FastifyInstance) => {
    app.addHook('preSerialization', async (request, reply, payload) => {
      const path = request.url.split('?')[0]!;
      if (reply.statusCode !== 200) return payload; // a refusal (problem+json) has no data
      if (path.startsWith('/v1/receipts/')) return withoutData(payload as StoredReceiptPayload);
      if (path.startsWith('/v1/batches/')) {
        const page = payload as { receipts: StoredReceiptPayload[] };
        return { ...page, receipts: page.receipts.map(withoutData) };
      }
      return payload;
    });
    if (withhold !== 'inputs')
      app.addHook('onRequest', async (request) => {
        const path = request.url.split('?')[0]!;
        if (path.startsWith('/v1/batches/'))
          throw new GlassboxError('NOT_FOUND', `no committed batch with root ${path.slice(12)}`, {
            field: 'root',
          });
      });
  };
  return { extendApp, ...(withhold === 'batches' ? { availabilityData: () => NOTHING } : {}) };
}

const NOTHING: AvailabilityData = { batchLeaves: () => undefined, receiptData: () => undefined };

type StoredReceiptPayload = Record<string, unknown>;

function withoutData({
  inputs: _i,
  outputs: _o,
  trace: _t,
  ...rest
}: StoredReceiptPayload): StoredReceiptPayload {
  return rest;
}

/**
 * How an LLM provider fails its clients without lying, for the gateway's resilience tests
 * (test/e2e/gateway.test.ts): `tokenDelayMs` slows every generated token (a stream long enough to
 * kill the provider in the middle of it); `refuse` answers the OpenAI routes with 403 (a provider
 * that has blocked these clients) for the clients named (every client when none are).
 */
export type ServingFaults = {
  readonly tokenDelayMs?: number;
  readonly refuse?: { readonly status: 403; readonly clients?: readonly Address[] };
};

/** `engine`, each token held back `delayMs` before it is handed on (the sampler's result unchanged). */
export function withTokenDelay(engine: TokenEngine, delayMs: number): TokenEngine {
  return {
    ...engine,
    async *generate(pkg, promptIds, options) {
      for await (const event of engine.generate(pkg, promptIds, options)) {
        if (event.type === 'token') await new Promise((resolve) => setTimeout(resolve, delayMs));
        yield event;
      }
    },
  };
}

/** Every token engine of `engines`, slowed by `delayMs` a token. */
function slowTokens(engines: Engines, delayMs: number | undefined): Engines {
  if (!delayMs) return engines;
  return createEngines(
    engines.list.map((engine) => (engine.kind === 'tokens' ? withTokenDelay(engine, delayMs) : engine)),
  );
}

const OPENAI_ROUTES = new Set(['/v1/chat/completions', '/v1/completions']);

/**
 * A preHandler hook (after the route's preValidation proved the session key) answering the OpenAI
 * routes with `refuse.status` and OpenAI's error body, as a provider that blocked a client would.
 */
export function refusing(refuse: NonNullable<ServingFaults['refuse']>): (app: FastifyInstance) => void {
  const refused = (request: FastifyRequest) => {
    if (!OPENAI_ROUTES.has(request.url.split('?')[0]!)) return false;
    if (refuse.clients === undefined) return true;
    const client = sessionClient(request);
    return client !== undefined && refuse.clients.some((c) => isAddressEqual(c, client));
  };
  return (app) => {
    app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
      if (!refused(request)) return;
      const client = sessionClient(request) ?? 'this client';
      return reply.status(refuse.status).send({
        error: {
          message: `this provider does not serve ${client}`,
          type: 'permission_error',
          param: null,
          code: 'forbidden',
        },
      });
    });
  };
}

/**
 * The createNode options of a node with `faults`: the engines it would run by default (with the
 * config's run time limit), wrapped, and the withholding and refusing hooks.
 */
export function faultyNode(config: NodeConfig, faults: NodeFaults & ServingFaults): CreateNodeOptions {
  const limits = { timeoutMs: config.runTimeoutMs };
  const engines = defaultEngines({ onnx: { limits }, llm: { limits } });
  const withheld = faults.withhold ? withholding(faults.withhold) : {};
  const refuse = faults.refuse;
  return {
    engines: slowTokens(enginesWithFaults(engines, faults), faults.tokenDelayMs),
    ...withheld,
    ...(refuse
      ? {
          extendApp: async (app: FastifyInstance) => {
            await withheld.extendApp?.(app);
            refusing(refuse)(app);
          },
        }
      : {}),
  };
}

/** The entry of a devnet provider process with faults (src/devnet's `entry` option). */
const FAULTY_NODE = fileURLToPath(new URL('./faulty-node.ts', import.meta.url));

/**
 * Devnet options of a provider process that runs with `faults`, through tsx since it runs from
 * test/ (`--import tsx` resolves from the working directory: the repository root, where npm and
 * vitest run).
 */
export function faultyProvider(faults: NodeFaults & ServingFaults): DevnetProviderOptions {
  return { entry: ['--import', 'tsx', FAULTY_NODE, '--faults', JSON.stringify(faults)] };
}

/**
 * The answer with its first numeric output changed. A traced answer gets a trace that agrees with
 * the lie (the output's step re-hashed, when that output is one of the trace's checkpoints), as a
 * cheater would sign, so that bisection finds the step that produced the wrong output; when it is
 * not, the traces agree and the challenge is plain.
 */
export function perturbAnswer(
  outputs: TensorMap,
  trace: Trace | undefined,
): { outputs: TensorMap; trace?: Trace } {
  const perturbed = perturbOutputs(outputs);
  if (!trace) return { outputs: perturbed };
  const steps = trace.steps.map((step) =>
    perturbed[step.output] !== undefined && perturbed[step.output] !== outputs[step.output]
      ? { ...step, hash: hashTensors({ [step.output]: perturbed[step.output]! }) }
      : step,
  );
  return { outputs: perturbed, trace: traceOf(steps) };
}

function perturbOutputs(outputs: TensorMap): TensorMap {
  const names = Object.keys(outputs).sort();
  const name = names.find((n) => outputs[n]!.dtype !== 'string' && outputs[n]!.data.length > 0);
  if (name === undefined) return outputs;
  const t = outputs[name]!;
  return { ...outputs, [name]: perturbTensor(t) };
}

function perturbTensor(t: Tensor): Tensor {
  switch (t.dtype) {
    case 'string':
      return t;
    case 'float32':
    case 'float64': {
      const data = t.data.slice();
      data[0] = data[0]! + 1e-3;
      return { ...t, data } as Tensor;
    }
    case 'int64': {
      const data = t.data.slice();
      data[0] = data[0]! + 1n;
      return { ...t, data };
    }
    case 'bool': {
      const data = t.data.slice();
      data[0] = data[0] === 0 ? 1 : 0;
      return { ...t, data };
    }
    default: {
      const data = t.data.slice();
      data[0] = data[0]! + 1; // typed arrays wrap at the dtype's range: still a different value
      return { ...t, data } as Tensor;
    }
  }
}

/**
 * Faults of an LLM provider, read at every generation (a test may change them on a running node):
 * a slow first token (hedging), a stream that stalls or fails after some tokens (mid-stream
 * failover), and a substituted token (a provider signing a generation it did not sample).
 */
export type TokenFaults = {
  /** Wait this long before the first token. */
  firstTokenDelayMs?: number;
  /** After this many tokens, send nothing more until the client goes away. */
  stallAfterTokens?: number;
  /** After this many tokens, fail (RUN_FAILED): the stream ends with an error event. */
  failAfterTokens?: number;
  /** Replace the output token at this position by the next id of the vocabulary. */
  substituteAt?: number;
  /** Send every token, then nothing more (no finish, no receipt) until the client goes away. */
  stallAtEnd?: boolean;
};

/** `engine`'s generations, with the faults `faults` holds when each starts. */
export function withTokenFaults(engine: TokenEngine, faults: TokenFaults): TokenEngine {
  return {
    ...engine,
    async *generate(pkg, promptIds, options) {
      const f = { ...faults };
      let n = 0;
      const swap = (id: number) =>
        (id + 1) % (pkg.manifest.format === 'llm' ? pkg.manifest.llm.vocabSize : 1);
      for await (const event of engine.generate(pkg, promptIds, options)) {
        if (event.type === 'done' && f.stallAtEnd) {
          await sleep(Infinity, options.signal);
          return;
        }
        if (event.type === 'done') {
          const ids = [...event.outputIds];
          if (f.substituteAt !== undefined && f.substituteAt < ids.length)
            ids[f.substituteAt] = swap(ids[f.substituteAt]!);
          yield { ...event, outputIds: ids };
          return;
        }
        if (n === 0 && f.firstTokenDelayMs) await sleep(f.firstTokenDelayMs, options.signal);
        if (f.stallAfterTokens !== undefined && n === f.stallAfterTokens) {
          await sleep(Infinity, options.signal);
          return;
        }
        if (f.failAfterTokens !== undefined && n === f.failAfterTokens)
          throw new GlassboxError('RUN_FAILED', 'the runtime failed (test fault)');
        yield n === f.substituteAt ? { ...event, id: swap(event.id) } : event;
        n++;
      }
    },
  };
}

/** `engines` with the LLM engine's generations faulty as `faults` says. */
export function tokenEnginesWithFaults(engines: Engines, faults: TokenFaults): Engines {
  const tokens = engines.list.filter((e) => e.kind === 'tokens');
  const rest = engines.list.filter((e) => e.kind !== 'tokens');
  return createEngines([...tokens.map((e) => withTokenFaults(e as TokenEngine, faults)), ...rest]);
}

/** Resolves after `ms`, or when `signal` aborts (Infinity: only then). */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = ms === Infinity ? undefined : setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
