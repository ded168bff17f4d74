import { arch } from 'node:process';
import ort from 'onnxruntime-node';
import { hashTensors } from '../../protocol/encoding.js';
import { GlassboxError, isGlassboxError } from '../../protocol/errors.js';
import { checkInputs } from '../../protocol/inputs.js';
import type { ModelPackage } from '../../protocol/manifest.js';
import { ZERO_HASH } from '../../protocol/receipt.js';
import {
  runtimeHash,
  type GraphOptimizationLevel,
  type OnnxProfile,
} from '../../protocol/runtime-profile.js';
import type { Tensor, TensorMap } from '../../protocol/tensor.js';
import {
  DEFAULT_LIMITS,
  type TensorEngine,
  type RunOptions,
  type RunResult,
  type RuntimeLimits,
  type TraceStepResult,
} from '../engine.js';
import { cpuSessionOptions } from '../session-options.js';
import { withTimeout } from '../timeout.js';
import { traceOf, type Trace } from '../trace.js';
import { fromOrt, toOrt } from './tensors.js';
import { exposeIntermediates, traceLeaf, tracePoints, type TracePoint } from './trace.js';

export type OnnxEngineOptions = {
  /**
   * Part of the profile, because it changes output bits. Default `basic`: constant folding,
   * redundant-node elimination and the fusions that fold constants into weights. Measured on the
   * example CNN: `disabled`, `basic` and `extended` give the same bits, `all` different ones. `all`
   * adds CPU-specific layouts (NCHWc blocks sized by the machine's vector width: 8 floats with
   * AVX2, 16 with AVX-512), so its float results depend on the vector width, which the profile's
   * `arch` does not record: two x64 providers with one profile could disagree. (Some float kernels
   * are chosen by CPU features at every level, e.g. exp in Softmax.) `all` is faster on that CNN
   * (one thread: 0.78 vs 1.23 ms for a batch of 64, 7.2 vs 9.6 ms for 512), but a run's cost is
   * dominated by hashing its inputs anyway (keccak256 in JS, ~13 MB/s).
   */
  readonly graphOptimizationLevel?: GraphOptimizationLevel;
  /** onnxruntime session config entries that change numerics; part of the profile. */
  readonly options?: Readonly<Record<string, string>>;
  /** Not part of the profile: onnxruntime is bit-identical across thread counts (tested). */
  readonly intraOpNumThreads?: number;
  readonly limits?: Partial<RuntimeLimits>;
  /** How many sessions stay loaded (least recently used are released first); traced ones count. */
  readonly maxSessions?: number;
};

/** Which session of a model: as is, traced, or traced and cut after a step (a number). */
type SessionKind = 'plain' | 'trace' | number;

/** A loaded session; released once it is evicted and no run is using it. */
type Loaded = {
  readonly session: ort.InferenceSession;
  /** What a run fetches: the declared outputs, then (traced sessions) every traced intermediate. */
  readonly fetches: readonly string[];
  /** The traced intermediates, in graph order; absent for an untraced session. */
  readonly points?: readonly TracePoint[];
  active: number;
  evicted: boolean;
};

function releaseWhenIdle(loaded: Loaded): void {
  if (loaded.evicted && loaded.active === 0) void loaded.session.release().catch(() => undefined);
}

/**
 * The runtime profile an ONNX engine with these options runs under, without loading anything:
 * what a deployment admits on chain and a node declares.
 */
export function onnxProfile(
  options: Pick<OnnxEngineOptions, 'graphOptimizationLevel' | 'options'> = {},
): OnnxProfile {
  return {
    engine: 'onnxruntime-node',
    engineVersion: ort.env.versions.node ?? ort.env.versions.common,
    executionProvider: 'cpu',
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'basic',
    arch,
    options: { ...options.options },
  };
}

/** The ONNX engine on onnxruntime-node's CPU execution provider. */
export function createOnnxEngine(options: OnnxEngineOptions = {}): TensorEngine {
  const profile = onnxProfile(options);
  const hash = runtimeHash(profile);
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const maxSessions = Math.max(1, options.maxSessions ?? 16);
  // Keyed by model id (plus `#trace`); a Map iterates in insertion order, so the first key is the LRU.
  const sessions = new Map<string, Promise<Loaded>>();

  const sessionOptions: ort.InferenceSession.SessionOptions = {
    ...cpuSessionOptions(profile.graphOptimizationLevel, options.intraOpNumThreads),
    ...(Object.keys(profile.options).length === 0 ? {} : { extra: nestConfig(profile.options) }),
  };

  /** The model's entry file, checked against the size limit. */
  function entryOf(pkg: ModelPackage): Uint8Array {
    const { manifest } = pkg;
    const entry = pkg.files.get(manifest.entry);
    if (!entry)
      throw new GlassboxError('MODEL_INVALID', `the package has no file ${manifest.entry}`, {
        field: 'manifest.entry',
      });
    let size = 0;
    for (const bytes of pkg.files.values()) size += bytes.byteLength;
    if (size > limits.maxModelBytes)
      throw new GlassboxError(
        'MODEL_TOO_LARGE',
        `model ${pkg.id} is ${size} bytes, above the limit of ${limits.maxModelBytes}`,
        { field: 'model', details: { size, limit: limits.maxModelBytes } },
      );
    return entry;
  }

  async function createSession(pkg: ModelPackage, bytes: Uint8Array): Promise<ort.InferenceSession> {
    try {
      return await ort.InferenceSession.create(bytes, sessionOptions);
    } catch (cause) {
      throw new GlassboxError(
        'MODEL_INVALID',
        `onnxruntime cannot load model ${pkg.id}: ${firstLine(cause)}`,
        {
          field: `files.${pkg.manifest.entry}`,
          cause,
        },
      );
    }
  }

  function load(pkg: ModelPackage, kind: SessionKind): Promise<Loaded> {
    return typeof kind === 'number' ? loadPrefix(pkg, kind) : loadWhole(pkg, kind === 'trace');
  }

  async function loadWhole(pkg: ModelPackage, trace: boolean): Promise<Loaded> {
    const { manifest } = pkg;
    const entry = entryOf(pkg);
    const field = `files.${manifest.entry}`;
    const exposed = trace ? withField(field, () => exposeIntermediates(entry)) : undefined;
    const session = await createSession(pkg, exposed?.bytes ?? entry);
    try {
      // The manifest must describe this graph; a mismatch would otherwise surface mid-run.
      manifest.inputs.forEach((spec, i) => {
        if (!session.inputNames.includes(spec.name))
          throw new GlassboxError('MODEL_INVALID', `the graph has no input ${spec.name}`, {
            field: `manifest.inputs[${i}].name`,
          });
      });
      manifest.outputs.forEach((spec, i) => {
        if (!session.outputNames.includes(spec.name))
          throw new GlassboxError('MODEL_INVALID', `the graph has no output ${spec.name}`, {
            field: `manifest.outputs[${i}].name`,
          });
      });
      const declared = manifest.outputs.map((o) => o.name);
      if (!exposed) return { session, fetches: declared, active: 0, evicted: false };
      const points = tracePoints(exposed.points, session.outputMetadata);
      if (points.length === 0)
        throw new GlassboxError('MODEL_INVALID', 'the graph has no tensor values to trace', { field });
      const fetches = [...new Set([...declared, ...points.map((p) => p.output)])];
      return { session, fetches, points, active: 0, evicted: false };
    } catch (error) {
      await session.release().catch(() => undefined);
      throw error;
    }
  }

  /**
   * The traced graph cut after step `step`. Steps count only tensor-valued trace points, which the
   * session reports once it is built, so the cut starts at the same point and moves later past any
   * non-tensor points before it.
   */
  async function loadPrefix(pkg: ModelPackage, step: number): Promise<Loaded> {
    const entry = entryOf(pkg);
    const field = `files.${pkg.manifest.entry}`;
    for (let through = step; ;) {
      const exposed = withField(field, () => exposeIntermediates(entry, through));
      const session = await createSession(pkg, exposed.bytes);
      // a cut may keep only points that are not tensors: then it moves later
      const points = tracePoints(exposed.points, session.outputMetadata);
      if (points.length > step)
        return { session, fetches: [points[step]!.output], points, active: 0, evicted: false };
      await session.release().catch(() => undefined);
      if (exposed.complete)
        throw new GlassboxError(
          'REQUEST_INVALID',
          `model ${pkg.id} has ${points.length} trace steps, not ${step + 1}`,
          {
            field: 'step',
          },
        );
      through += step + 1 - points.length;
    }
  }

  function session(pkg: ModelPackage, kind: SessionKind): Promise<Loaded> {
    const key = kind === 'plain' ? pkg.id : kind === 'trace' ? `${pkg.id}#trace` : `${pkg.id}#trace@${kind}`;
    let loaded = sessions.get(key);
    if (loaded) {
      sessions.delete(key); // re-insert: now the most recently used
    } else {
      const loading = load(pkg, kind);
      // A model that failed to load is not remembered: the next run tries again.
      loading.catch(() => {
        if (sessions.get(key) === loading) sessions.delete(key);
      });
      loaded = loading;
    }
    sessions.set(key, loaded);
    while (sessions.size > maxSessions) {
      const [oldest, evicted] = sessions.entries().next().value!;
      sessions.delete(oldest);
      void evicted
        .then((l) => {
          l.evicted = true;
          releaseWhenIdle(l);
        })
        .catch(() => undefined);
    }
    return loaded;
  }

  async function run(pkg: ModelPackage, inputs: TensorMap, runOptions: RunOptions = {}): Promise<RunResult> {
    checkInputs(pkg.manifest.inputs, inputs, limits);
    const loaded = await session(pkg, runOptions.trace ? 'trace' : 'plain');
    const { raw, durationMs } = await execute(pkg, loaded, inputs, runOptions);
    const outputs: Record<string, Tensor> = {};
    for (const spec of pkg.manifest.outputs) {
      const value = raw[spec.name];
      if (!value)
        throw new GlassboxError('RUN_FAILED', `the model produced no output ${spec.name}`, {
          field: `outputs.${spec.name}`,
        });
      outputs[spec.name] = fromOrt(value, `outputs.${spec.name}`);
    }
    const trace = loaded.points ? traceRun(loaded.points, raw) : undefined;
    return {
      outputs,
      inputHash: runOptions.inputHash ?? hashTensors(inputs),
      outputHash: hashTensors(outputs),
      runtime: hash,
      traceRoot: trace?.root ?? ZERO_HASH,
      ...(trace ? { trace } : {}),
      durationMs,
    };
  }

  async function traceStep(
    pkg: ModelPackage,
    inputs: TensorMap,
    step: number,
    runOptions: RunOptions = {},
  ): Promise<TraceStepResult> {
    if (!Number.isSafeInteger(step) || step < 0)
      throw new GlassboxError('REQUEST_INVALID', `trace step ${step} is not a non-negative integer`, {
        field: 'step',
      });
    checkInputs(pkg.manifest.inputs, inputs, limits);
    const loaded = await session(pkg, step);
    const { raw, durationMs } = await execute(pkg, loaded, inputs, runOptions);
    const point = loaded.points![step]!;
    const value = raw[point.output];
    if (!value) throw new GlassboxError('RUN_FAILED', `the traced run did not produce ${point.output}`);
    return { step: { ...point, hash: traceLeaf(point.output, value) }, durationMs };
  }

  /** Runs a loaded session on `inputs`, fetching what it fetches, within the time limit. */
  async function execute(
    pkg: ModelPackage,
    loaded: Loaded,
    inputs: TensorMap,
    runOptions: RunOptions,
  ): Promise<{ raw: ort.InferenceSession.ReturnType; durationMs: number }> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const spec of pkg.manifest.inputs) feeds[spec.name] = toOrt(inputs[spec.name]!);
    loaded.active++;
    const work = loaded.session.run(feeds, [...loaded.fetches]).finally(() => {
      loaded.active--;
      releaseWhenIdle(loaded);
    });
    try {
      const { value, durationMs } = await withTimeout(
        work,
        runOptions.timeoutMs ?? limits.timeoutMs,
        `model ${pkg.id}`,
      );
      return { raw: value, durationMs };
    } catch (cause) {
      if (isGlassboxError(cause, 'RUN_TIMEOUT')) throw cause;
      throw new GlassboxError(
        'RUN_FAILED',
        `onnxruntime failed running model ${pkg.id}: ${firstLine(cause)}`,
        {
          cause,
        },
      );
    }
  }

  async function close(): Promise<void> {
    const all = [...sessions.values()];
    sessions.clear();
    for (const loaded of await Promise.allSettled(all)) {
      if (loaded.status === 'fulfilled') {
        loaded.value.evicted = true;
        releaseWhenIdle(loaded.value);
      }
    }
  }

  const preload = async (pkg: ModelPackage): Promise<void> => {
    await session(pkg, 'plain');
  };
  return {
    kind: 'tensors',
    format: 'onnx',
    capabilities: { trace: true },
    profile,
    runtimeHash: hash,
    run,
    traceStep,
    load: preload,
    close,
  };
}

/** Hashes each traced tensor, in graph order, and builds the Merkle tree over them. */
function traceRun(points: readonly TracePoint[], raw: ort.InferenceSession.ReturnType): Trace {
  return traceOf(
    points.map((point) => {
      const value = raw[point.output];
      if (!value) throw new GlassboxError('RUN_FAILED', `the traced run did not produce ${point.output}`);
      return { ...point, hash: traceLeaf(point.output, value) };
    }),
  );
}

/** Runs `f`, pointing a MODEL_INVALID it throws at the model file. */
function withField<T>(field: string, f: () => T): T {
  try {
    return f();
  } catch (error) {
    if (isGlassboxError(error, 'MODEL_INVALID') && error.field === undefined)
      throw new GlassboxError('MODEL_INVALID', error.shortMessage, { field, cause: error.cause });
    throw error;
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
}

/** `{"session.set_denormal_as_zero": "1"}` as onnxruntime's nested `extra` config object. */
function nestConfig(entries: Readonly<Record<string, string>>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entries)) {
    const parts = key.split('.');
    let node = root;
    for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]!] = value;
  }
  return root;
}
