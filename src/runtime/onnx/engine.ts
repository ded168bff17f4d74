import { arch } from 'node:process';
import ort from 'onnxruntime-node';
import { hashTensors } from '../../protocol/encoding.js';
import { GlassboxError } from '../../protocol/errors.js';
import { checkInputs } from '../../protocol/inputs.js';
import type { ModelPackage } from '../../protocol/manifest.js';
import { ZERO_HASH } from '../../protocol/receipt.js';
import {
  runtimeHash,
  type GraphOptimizationLevel,
  type RuntimeProfile,
} from '../../protocol/runtime-profile.js';
import type { Tensor, TensorMap } from '../../protocol/tensor.js';
import {
  DEFAULT_LIMITS,
  type Engine,
  type RunOptions,
  type RunResult,
  type RuntimeLimits,
} from '../engine.js';
import { fromOrt, toOrt } from './tensors.js';
import { buildTrace, exposeIntermediates, type TracePoint } from './trace.js';

export type OnnxEngineOptions = {
  /**
   * Part of the profile, because it changes output bits. Default `basic`: constant folding and
   * redundant-node elimination only. `extended`/`all` add fusions and CPU-specific layouts (NCHWc
   * blocks sized by the vector width), which makes float results depend more on the machine.
   */
  readonly graphOptimizationLevel?: GraphOptimizationLevel;
  /** onnxruntime session config entries that change numerics; part of the profile. */
  readonly options?: Readonly<Record<string, string>>;
  /** Not part of the profile: onnxruntime is bit-identical across thread counts (tested). */
  readonly intraOpNumThreads?: number;
  readonly limits?: Partial<RuntimeLimits>;
  /** How many models' sessions stay loaded (least recently used are released first). */
  readonly maxSessions?: number;
};

/** A loaded session; released once it is evicted and no run is using it. */
type Loaded = { session: ort.InferenceSession; points?: TracePoint[]; active: number; evicted: boolean };

function releaseWhenIdle(loaded: Loaded): void {
  if (loaded.evicted && loaded.active === 0) void loaded.session.release().catch(() => undefined);
}

/** The ONNX engine on onnxruntime-node's CPU execution provider. */
export function createOnnxEngine(options: OnnxEngineOptions = {}): Engine {
  const profile: RuntimeProfile = {
    engine: 'onnxruntime-node',
    engineVersion: ort.env.versions.node ?? ort.env.versions.common,
    executionProvider: 'cpu',
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'basic',
    arch,
    options: { ...options.options },
  };
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const maxSessions = options.maxSessions ?? 16;
  // Keyed by model id (plus `#trace`); a Map iterates in insertion order, so the first key is the LRU.
  const sessions = new Map<string, Promise<Loaded>>();

  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    graphOptimizationLevel: profile.graphOptimizationLevel,
    executionMode: 'sequential',
    interOpNumThreads: 1,
    ...(options.intraOpNumThreads === undefined ? {} : { intraOpNumThreads: options.intraOpNumThreads }),
    ...(Object.keys(profile.options).length === 0 ? {} : { extra: nestConfig(profile.options) }),
  };

  async function load(pkg: ModelPackage, trace: boolean): Promise<Loaded> {
    const entry = pkg.files.get(pkg.manifest.entry);
    if (!entry)
      throw new GlassboxError('MODEL_INVALID', `the package has no file ${pkg.manifest.entry}`, {
        field: 'manifest.entry',
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
    const traced = trace ? exposeIntermediates(entry) : undefined;
    try {
      const session = await ort.InferenceSession.create(traced?.bytes ?? entry, sessionOptions);
      return { session, active: 0, evicted: false, ...(traced ? { points: traced.points } : {}) };
    } catch (cause) {
      throw new GlassboxError(
        'MODEL_INVALID',
        `onnxruntime cannot load model ${pkg.id}: ${firstLine(cause)}`,
        { field: `files.${pkg.manifest.entry}`, cause },
      );
    }
  }

  function session(pkg: ModelPackage, trace: boolean): Promise<Loaded> {
    const key = trace ? `${pkg.id}#trace` : pkg.id;
    let loaded = sessions.get(key);
    if (loaded) {
      sessions.delete(key); // re-insert: now the most recently used
    } else {
      loaded = load(pkg, trace);
      loaded.catch(() => sessions.delete(key));
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
    const trace = runOptions.trace ?? false;
    const loaded = await session(pkg, trace);
    const feeds: Record<string, ort.Tensor> = {};
    for (const spec of pkg.manifest.inputs) feeds[spec.name] = toOrt(inputs[spec.name]!);
    const started = performance.now();
    loaded.active++;
    const work = loaded.session.run(feeds).finally(() => {
      loaded.active--;
      releaseWhenIdle(loaded);
    });
    let raw: ort.InferenceSession.ReturnType;
    try {
      raw = await work;
    } catch (cause) {
      throw new GlassboxError(
        'RUN_FAILED',
        `onnxruntime failed running model ${pkg.id}: ${firstLine(cause)}`,
        { cause },
      );
    }
    const durationMs = performance.now() - started;
    checkDuration(durationMs, runOptions.timeoutMs ?? limits.timeoutMs, pkg.id);
    const points = loaded.points;
    const produced: Record<string, Tensor> = {};
    for (const [name, value] of Object.entries(raw)) produced[name] = fromOrt(value, name);
    const outputs: Record<string, Tensor> = {};
    for (const spec of pkg.manifest.outputs) {
      const value = produced[spec.name];
      if (!value)
        throw new GlassboxError('RUN_FAILED', `the model produced no output ${spec.name}`, {
          field: spec.name,
        });
      outputs[spec.name] = value;
    }
    const traced = points ? buildTrace(points, produced) : undefined;
    return {
      outputs,
      inputHash: hashTensors(inputs),
      outputHash: hashTensors(outputs),
      runtime: hash,
      traceRoot: traced?.root ?? ZERO_HASH,
      ...(traced ? { trace: traced } : {}),
      durationMs,
    };
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

  const hash = runtimeHash(profile);
  return { profile, runtimeHash: hash, run, close };
}

/**
 * Enforces the per-run time limit. onnxruntime-node runs a session synchronously on the calling
 * thread (inside a setImmediate), so no timer can fire during a run and nothing can abort it: the
 * limit is checked when the run returns, and a late result is refused, never reported. Preempting a
 * run needs it on another thread or process, which is where a serving node puts its engines.
 */
function checkDuration(durationMs: number, timeoutMs: number, model: string): void {
  if (durationMs > timeoutMs)
    throw new GlassboxError(
      'RUN_TIMEOUT',
      `model ${model} ran ${durationMs.toFixed(1)} ms, longer than the limit of ${timeoutMs} ms`,
      {
        details: { durationMs, timeoutMs },
      },
    );
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
