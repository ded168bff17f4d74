import { arch } from 'node:process';
import ort from 'onnxruntime-node';
import { GlassboxError, isGlassboxError } from '../../protocol/errors.js';
import { checkPrefix, PREFIX_FIELD } from '../../protocol/llm.js';
import type { LlmManifest, ModelPackage } from '../../protocol/manifest.js';
import { runtimeHash, type GraphOptimizationLevel, type LlmProfile } from '../../protocol/runtime-profile.js';
import { checkSamplerParams, SAMPLER, sampleToken } from '../../protocol/sampling.js';
import {
  DEFAULT_LIMITS,
  type FinishReason,
  type GenerateOptions,
  type GenerationEvent,
  type LlmPrompt,
  type PromptTokens,
  type RuntimeLimits,
  type SamplingParams,
  type TokenEngine,
} from '../engine.js';
import { cpuSessionOptions } from '../session-options.js';
import { withTimeout } from '../timeout.js';
import { checkLayout, type Layout } from './layout.js';
import { logprobsOf } from './logprobs.js';
import { createTextStream, type TextStream } from './text.js';
import { loadTokenizer, promptTokens, type LlmTokenizer } from './tokenizer.js';

/**
 * The version of this generation loop (KV cache feeding, stopping rules, sampler calls): part of the
 * profile, so a change that could change which tokens come out gets a new version.
 */
export const LLM_ENGINE_VERSION = '1.0.0';

/**
 * The most logits bytes one scoring pass asks for (13 rows of a 151,936-token vocabulary).
 * Measured on tiny-chat, 128 rows, back to back on a busy machine: passes of 13 rows take 120-450
 * ms of CPU in all (median 200), one pass of all 128 rows 380-540 (median 480). onnxruntime-node copies every output into a fresh ArrayBuffer; one of 78 MB is
 * fresh memory from the kernel each time (a page fault per 4 KB), outputs of a few MB reuse
 * memory the allocator already has.
 */
const SCORE_PASS_BYTES = 8 * 1024 * 1024;

export type LlmEngineOptions = {
  /**
   * Part of the profile: it changes the logits' last bits. Default `basic` (as the ONNX engine, and
   * for its reason: `all` adds layouts sized by the CPU's vector width, which `arch` does not record).
   */
  readonly graphOptimizationLevel?: GraphOptimizationLevel;
  /** Not part of the profile: onnxruntime's CPU kernels give the same bits on any thread count. */
  readonly intraOpNumThreads?: number;
  /** `timeoutMs` bounds one whole generation (prefill and every step) and one `score`. */
  readonly limits?: Partial<RuntimeLimits>;
  /** How many models stay loaded (least recently used released first). */
  readonly maxModels?: number;
};

/** The profile an LLM engine with these options runs under, without loading anything. */
export function llmProfile(options: Pick<LlmEngineOptions, 'graphOptimizationLevel'> = {}): LlmProfile {
  return {
    engine: 'glassbox-llm',
    engineVersion: LLM_ENGINE_VERSION,
    onnxruntime: 'onnxruntime-node',
    onnxruntimeVersion: ort.env.versions.node ?? ort.env.versions.common,
    executionProvider: 'cpu',
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'basic',
    arch,
    sampler: SAMPLER,
  };
}

/** A loaded model: its session, the checked layout and its tokenizer. */
type Loaded = {
  readonly session: ort.InferenceSession;
  readonly layout: Layout;
  readonly tok: LlmTokenizer;
  readonly eos: ReadonlySet<number>;
  readonly contextLength: number;
  active: number;
  evicted: boolean;
};

type Past = Record<string, ort.Tensor>;

/**
 * One forward pass's results: the logits of the last `keep` fed positions (of every one when the
 * graph has no `num_logits_to_keep`), and the cache for the next pass.
 */
type Forward = { readonly logits: Float32Array; readonly present: Past };

function releaseWhenIdle(loaded: Loaded): void {
  if (loaded.evicted && loaded.active === 0) void loaded.session.release().catch(() => undefined);
}

/** The engine for format `llm`: decoder LLMs in the Hugging Face ONNX layout on onnxruntime-node. */
export function createLlmEngine(options: LlmEngineOptions = {}): TokenEngine {
  const profile = llmProfile(options);
  const hash = runtimeHash(profile);
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const maxModels = Math.max(1, options.maxModels ?? 4);
  const models = new Map<string, Promise<Loaded>>();
  const sessionOptions = cpuSessionOptions(profile.graphOptimizationLevel, options.intraOpNumThreads);

  async function loadModel(pkg: ModelPackage): Promise<Loaded> {
    const manifest = pkg.manifest as LlmManifest;
    if (manifest.format !== 'llm')
      throw new GlassboxError('MODEL_INVALID', `model ${pkg.id} is format "${manifest.format}", not "llm"`, {
        field: 'manifest.format',
      });
    let size = 0;
    for (const bytes of pkg.files.values()) size += bytes.byteLength;
    if (size > limits.maxModelBytes)
      throw new GlassboxError(
        'MODEL_TOO_LARGE',
        `model ${pkg.id} is ${size} bytes, above the limit of ${limits.maxModelBytes}`,
        {
          field: 'model',
          details: { size, limit: limits.maxModelBytes },
        },
      );
    const entry = pkg.files.get(manifest.entry);
    if (!entry)
      throw new GlassboxError('MODEL_INVALID', `the package has no file ${manifest.entry}`, {
        field: 'manifest.entry',
      });
    const tok = loadTokenizer(pkg);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(entry, sessionOptions);
    } catch (cause) {
      throw new GlassboxError(
        'MODEL_INVALID',
        `onnxruntime cannot load model ${pkg.id}: ${firstLine(cause)}`,
        {
          field: `files.${manifest.entry}`,
          cause,
        },
      );
    }
    try {
      const layout = checkLayout(pkg, session);
      return {
        session,
        layout,
        tok,
        eos: new Set(manifest.llm.eosTokenIds),
        contextLength: manifest.llm.contextLength,
        active: 0,
        evicted: false,
      };
    } catch (error) {
      await session.release().catch(() => undefined);
      throw error;
    }
  }

  function loaded(pkg: ModelPackage): Promise<Loaded> {
    let model = models.get(pkg.id);
    if (model) {
      models.delete(pkg.id); // re-inserted below: now the most recently used
    } else {
      const loading = loadModel(pkg);
      loading.catch(() => {
        if (models.get(pkg.id) === loading) models.delete(pkg.id);
      });
      model = loading;
    }
    models.set(pkg.id, model);
    while (models.size > maxModels) {
      const [oldest, evicted] = models.entries().next().value!;
      models.delete(oldest);
      void evicted
        .then((m) => {
          m.evicted = true;
          releaseWhenIdle(m);
        })
        .catch(() => undefined);
    }
    return model;
  }

  /**
   * The feeds of a pass over `ids` after `pastLength` cached positions, asking for the logits of
   * the last `keep` positions where the graph can leave out the others.
   */
  function feeds(
    model: Loaded,
    ids: readonly number[],
    past: Past,
    pastLength: number,
    keep: number,
  ): Record<string, ort.Tensor> {
    const n = ids.length;
    const inputIds = new BigInt64Array(n);
    for (let i = 0; i < n; i++) inputIds[i] = BigInt(ids[i]!);
    const out: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', inputIds, [1, n]),
      // one sequence, no padding: every position is attended to
      attention_mask: new ort.Tensor('int64', new BigInt64Array(pastLength + n).fill(1n), [
        1,
        pastLength + n,
      ]),
      ...past,
    };
    if (model.layout.positionIds) {
      const positions = new BigInt64Array(n);
      for (let i = 0; i < n; i++) positions[i] = BigInt(pastLength + i);
      out['position_ids'] = new ort.Tensor('int64', positions, [1, n]);
    }
    if (model.layout.useCacheBranch)
      out['use_cache_branch'] = new ort.Tensor('bool', new Uint8Array([pastLength > 0 ? 1 : 0]), [1]);
    if (model.layout.logitsToKeep)
      out['num_logits_to_keep'] = new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
    return out;
  }

  function emptyPast(layout: Layout): Past {
    const past: Past = {};
    for (const name of layout.past)
      past[name] = new ort.Tensor('float32', new Float32Array(0), [1, layout.kvHeads, 0, layout.headDim]);
    return past;
  }

  /**
   * One forward pass. onnxruntime writes the logits straight into a Float32Array of ours (measured:
   * a third less CPU per decode step than letting it allocate an output that is then copied into
   * JS): a decode step passes the generation's one logits row, a pass over many positions a fresh
   * buffer of its rows. They are never copied again. `keep`: how many of the last positions'
   * logits the caller reads (all come back when the graph cannot leave any out; 0: all).
   */
  async function forward(
    model: Loaded,
    ids: readonly number[],
    past: Past,
    pastLength: number,
    keep: number,
    into?: ort.Tensor,
  ): Promise<Forward> {
    const { layout } = model;
    const v = layout.vocabSize;
    const rows = layout.logitsToKeep && keep > 0 ? Math.min(keep, ids.length) : ids.length;
    const logits = into ?? new ort.Tensor('float32', new Float32Array(rows * v), [1, rows, v]);
    const fetches: ort.InferenceSession.FetchesType = {
      logits,
      ...Object.fromEntries(layout.present.map((name) => [name, null])),
    };
    model.active++;
    try {
      const raw = await model.session.run(feeds(model, ids, past, pastLength, keep), fetches);
      const present: Past = {};
      layout.present.forEach((name, i) => (present[layout.past[i]!] = raw[name]!));
      return { logits: logits.data as Float32Array, present };
    } catch (cause) {
      throw new GlassboxError('RUN_FAILED', `onnxruntime failed running model: ${firstLine(cause)}`, {
        cause,
      });
    } finally {
      model.active--;
      releaseWhenIdle(model);
    }
  }

  function checkIds(ids: readonly number[], vocab: number, field: string): void {
    if (!Array.isArray(ids))
      throw new GlassboxError('REQUEST_INVALID', `${field} must be an array of token ids`, { field });
    ids.forEach((id, i) => {
      if (!(Number.isInteger(id) && id >= 0 && id < vocab))
        throw new GlassboxError(
          'REQUEST_INVALID',
          `${field}[${i}] = ${id} is not a token id (0..${vocab - 1})`,
          {
            field: `${field}[${i}]`,
          },
        );
    });
  }

  /** The prompt and sampling parameters fit the model: REQUEST_INVALID naming the field otherwise. */
  function checkGeneration(
    model: Loaded,
    promptIds: readonly number[],
    prefixIds: readonly number[],
    params: SamplingParams,
  ): void {
    checkIds(promptIds, model.layout.vocabSize, 'prompt_ids');
    if (!Array.isArray(prefixIds))
      throw new GlassboxError('REQUEST_INVALID', `${PREFIX_FIELD} must be an array of token ids`, {
        field: PREFIX_FIELD,
      });
    checkPrefix(prefixIds, { vocabSize: model.layout.vocabSize, eosTokenIds: [...model.eos] });
    const { contextLength } = model;
    if (promptIds.length === 0)
      throw new GlassboxError('REQUEST_INVALID', 'the prompt has no tokens', { field: 'prompt' });
    if (promptIds.length >= contextLength)
      throw new GlassboxError(
        'REQUEST_INVALID',
        `the prompt is ${promptIds.length} tokens: the context holds ${contextLength}, prompt and output together`,
        { field: 'prompt', details: { promptTokens: promptIds.length, contextLength } },
      );
    checkSamplerParams(params);
    const { maxTokens } = params;
    if (!(Number.isSafeInteger(maxTokens) && maxTokens >= 1))
      throw new GlassboxError('REQUEST_INVALID', `max_tokens ${maxTokens} must be a positive integer`, {
        field: 'max_tokens',
      });
    const held = promptIds.length + prefixIds.length;
    if (held + maxTokens > contextLength) {
      // the prefix is named when it is what does not fit: without it, prompt and max_tokens do
      const field =
        prefixIds.length > 0 && promptIds.length + maxTokens <= contextLength ? PREFIX_FIELD : 'max_tokens';
      throw new GlassboxError(
        'REQUEST_INVALID',
        `max_tokens ${maxTokens} with a prompt of ${promptIds.length} tokens${prefixIds.length > 0 ? ` and a prefix of ${prefixIds.length}` : ''} exceeds the context of ${contextLength}: at most ${Math.max(0, contextLength - held)}`,
        {
          field,
          details: {
            promptTokens: promptIds.length,
            prefixTokens: prefixIds.length,
            contextLength,
            maxTokens,
          },
        },
      );
    }
    if (!(typeof params.seed === 'bigint' && params.seed >= 0n && params.seed < 1n << 64n))
      throw new GlassboxError('REQUEST_INVALID', `seed ${String(params.seed)} is not a uint64`, {
        field: 'seed',
      });
    if (!Array.isArray(params.stop) || params.stop.some((s) => typeof s !== 'string'))
      throw new GlassboxError('REQUEST_INVALID', 'stop must be a list of strings', { field: 'stop' });
  }

  /**
   * The text stream of a continuation, its prefix consumed silently: it holds back (or shows next)
   * exactly what an uninterrupted run's would after those ids. A prefix whose text already completes
   * a stop string was a finished generation: REQUEST_INVALID naming the prefix.
   */
  function continuedText(model: Loaded, prefixIds: readonly number[], stop: readonly string[]): TextStream {
    const text = createTextStream(model.tok, stop);
    prefixIds.forEach((id, i) => {
      if (text.push(id).stopped)
        throw new GlassboxError(
          'REQUEST_INVALID',
          `${PREFIX_FIELD}: its text already completes a stop string at item ${i}: the generation ended there`,
          { field: PREFIX_FIELD, details: { index: i } },
        );
    });
    return text;
  }

  async function* generate(
    pkg: ModelPackage,
    promptIds: readonly number[],
    options: GenerateOptions,
  ): AsyncGenerator<GenerationEvent> {
    const { params, signal } = options;
    const prefixIds = options.prefixIds ?? [];
    const model = await loaded(pkg);
    checkGeneration(model, promptIds, prefixIds, params);
    if (
      options.logprobs !== undefined &&
      !(Number.isInteger(options.logprobs) && options.logprobs >= 0 && options.logprobs <= 20)
    )
      throw new GlassboxError(
        'REQUEST_INVALID',
        `top_logprobs ${options.logprobs} must be an integer from 0 to 20`,
        {
          field: 'top_logprobs',
        },
      );
    const { vocabSize } = model.layout;
    const started = performance.now();
    const text = continuedText(model, prefixIds, params.stop);
    // what the prefix made visible: not this generation's text
    const shownBefore = text.text.length;
    const outputIds: number[] = [];
    let past = emptyPast(model.layout);
    let pastLength = 0;
    // a continuation prefills the prefix with the prompt: the cache then holds what an
    // uninterrupted run's would after those ids
    let feed: readonly number[] = prefixIds.length > 0 ? [...promptIds, ...prefixIds] : promptIds;
    let finishReason: FinishReason = 'length';
    // The one logits row every pass writes: decode steps, and a prefill that can ask for its last
    // row only (without num_logits_to_keep its rows come in their own tensor).
    const step = new ort.Tensor('float32', new Float32Array(vocabSize), [1, 1, vocabSize]);
    const oneRow = model.layout.logitsToKeep;
    while (outputIds.length < params.maxTokens) {
      if (signal?.aborted) throw aborted(signal, outputIds.length);
      const elapsed = performance.now() - started;
      if (elapsed > limits.timeoutMs)
        throw new GlassboxError(
          'RUN_TIMEOUT',
          `generating with model ${pkg.id} took ${elapsed.toFixed(0)} ms, longer than the limit of ${limits.timeoutMs} ms`,
          { details: { durationMs: elapsed, timeoutMs: limits.timeoutMs, tokens: outputIds.length } },
        );
      // session.run computes inside a setImmediate: every step yields to the event loop first
      const { logits, present } = await forward(
        model,
        feed,
        past,
        pastLength,
        1,
        pastLength > 0 || oneRow ? step : undefined,
      );
      past = present;
      pastLength += feed.length;
      // the last position's logits predict the next token: a view, not a copy
      const row = logits.subarray(logits.length - vocabSize);
      // the Philox counter is the position in the whole output, prefix included
      const id = sampleToken(row, params, params.seed, prefixIds.length + outputIds.length);
      outputIds.push(id);
      const logprob =
        options.logprobs === undefined ? undefined : logprobsOf(model.tok, row, id, options.logprobs);
      let delta: string;
      if (model.eos.has(id)) {
        finishReason = 'stop';
        delta = text.end();
      } else {
        const pushed = text.push(id);
        delta = pushed.delta;
        if (pushed.stopped) finishReason = 'stop';
        else if (outputIds.length === params.maxTokens) delta += text.end();
      }
      yield { type: 'token', id, text: delta, ...(logprob ? { logprob } : {}) };
      if (finishReason === 'stop') break;
      feed = [id];
    }
    yield {
      type: 'done',
      finishReason,
      outputIds,
      text: text.text.slice(shownBefore),
      durationMs: performance.now() - started,
    };
  }

  /**
   * The rows of logits that predicted `outputIds`, from passes over prompt + output without a
   * cache, each asking for at most `SCORE_PASS_BYTES` of logits: the rows of positions
   * [from, to) come from a pass over the first `to` positions (causal attention: later positions
   * change nothing before them; the same bits as one pass over all, tested). Rows are views of each
   * pass's output. Without num_logits_to_keep one pass gives every row, as an export without it can.
   */
  async function scoreRows(model: Loaded, ids: readonly number[], first: number): Promise<Float32Array[]> {
    const v = model.layout.vocabSize;
    const rows: Float32Array[] = [];
    const take = (logits: Float32Array, count: number) => {
      const start = logits.length - count * v;
      for (let r = 0; r < count; r++) rows.push(logits.subarray(start + r * v, start + (r + 1) * v));
    };
    if (!model.layout.logitsToKeep) {
      const { logits } = await forward(model, ids, emptyPast(model.layout), 0, 0);
      take(logits, ids.length - first);
      return rows;
    }
    const perPass = Math.max(1, Math.floor(SCORE_PASS_BYTES / (4 * v)));
    for (let from = first; from < ids.length; from += perPass) {
      const to = Math.min(from + perPass, ids.length);
      const { logits } = await forward(model, ids.slice(0, to), emptyPast(model.layout), 0, to - from);
      take(logits, to - from);
    }
    return rows;
  }

  async function score(
    pkg: ModelPackage,
    promptIds: readonly number[],
    outputIds: readonly number[],
  ): Promise<readonly Float32Array[]> {
    const model = await loaded(pkg);
    const { vocabSize } = model.layout;
    checkIds(promptIds, vocabSize, 'prompt_ids');
    checkIds(outputIds, vocabSize, 'output_ids');
    if (promptIds.length === 0)
      throw new GlassboxError('REQUEST_INVALID', 'the prompt has no tokens', { field: 'prompt' });
    if (promptIds.length + outputIds.length > model.contextLength)
      throw new GlassboxError(
        'REQUEST_INVALID',
        `prompt and output are ${promptIds.length + outputIds.length} tokens, more than the context of ${model.contextLength}`,
        { field: 'output_ids' },
      );
    if (outputIds.length === 0) return [];
    // the last output token predicts nothing we check: it is not fed
    const ids = [...promptIds, ...outputIds.slice(0, -1)];
    // position p-1+t (from the prompt's last on) predicted output token t
    const { value } = await withTimeout(
      scoreRows(model, ids, promptIds.length - 1),
      limits.timeoutMs,
      `scoring with model ${pkg.id}`,
    );
    return value;
  }

  async function prompt(pkg: ModelPackage, request: LlmPrompt): Promise<PromptTokens> {
    const model = await loaded(pkg);
    const tokens = promptTokens(model.tok, request, pkg.manifest.name);
    if (tokens.ids.length >= model.contextLength)
      throw new GlassboxError(
        'REQUEST_INVALID',
        `the prompt is ${tokens.ids.length} tokens: the context of model ${pkg.manifest.name} holds ${model.contextLength}, prompt and output together`,
        {
          field: request.kind === 'chat' ? 'messages' : 'prompt',
          details: { promptTokens: tokens.ids.length, contextLength: model.contextLength },
        },
      );
    return tokens;
  }

  async function decode(pkg: ModelPackage, ids: readonly number[]): Promise<string> {
    const model = await loaded(pkg);
    checkIds(ids, model.layout.vocabSize, 'ids');
    return ids.length === 0 ? '' : model.tok.tokenizer.decode([...ids], { skip_special_tokens: true });
  }

  async function close(): Promise<void> {
    const all = [...models.values()];
    models.clear();
    for (const result of await Promise.allSettled(all))
      if (result.status === 'fulfilled') {
        result.value.evicted = true;
        releaseWhenIdle(result.value);
      }
  }

  return {
    kind: 'tokens',
    format: 'llm',
    capabilities: { trace: false },
    profile,
    runtimeHash: hash,
    prompt,
    generate,
    score,
    decode,
    load: async (pkg) => {
      await loaded(pkg);
    },
    close,
  };
}

function aborted(signal: AbortSignal, tokens: number): GlassboxError {
  return new GlassboxError('ABORTED', `the generation was aborted after ${tokens} tokens`, {
    cause: signal.reason,
    details: { tokens },
  });
}

function firstLine(error: unknown): string {
  if (isGlassboxError(error)) return error.shortMessage;
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}
