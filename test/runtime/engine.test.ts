import ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { hashTensors } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { runtimeHash } from '../../src/protocol/runtime-profile.js';
import type { Tensor, TensorMap } from '../../src/protocol/tensor.js';
import type { TensorEngine } from '../../src/runtime/index.js';
import { createOnnxEngine } from '../../src/runtime/onnx/engine.js';
import { EXAMPLES, examplePackage, exampleSamples } from '../support/examples.js';

const engines: TensorEngine[] = [];
function engine(options: Parameters<typeof createOnnxEngine>[0] = {}): TensorEngine {
  const e = createOnnxEngine(options);
  engines.push(e);
  return e;
}
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

/** onnxruntime-web's (wasm) outputs for the same package and inputs, as Glassbox tensors. */
async function runOnWeb(pkg: ModelPackage, inputs: TensorMap): Promise<TensorMap> {
  ortWeb.env.wasm.numThreads = 1;
  const session = await ortWeb.InferenceSession.create(pkg.files.get(pkg.manifest.entry)!);
  const feeds = Object.fromEntries(
    Object.entries(inputs).map(([k, t]) => [k, new ortWeb.Tensor(t.dtype, t.data as never, [...t.shape])]),
  );
  const raw = await session.run(feeds);
  await session.release();
  return Object.fromEntries(
    pkg.manifest.outputs.map((o) => {
      const t = raw[o.name]!;
      return [o.name, { dtype: t.type, shape: t.dims.map(Number), data: t.data } as Tensor];
    }),
  );
}

describe.each(EXAMPLES)('%s', (name) => {
  it('gives a single outputHash over 100 runs, on 1 and on 2 threads', async () => {
    const pkg = await examplePackage(name);
    const inputs = exampleSamples(pkg, name);
    const one = engine({ intraOpNumThreads: 1 });
    const two = engine({ intraOpNumThreads: 2 });
    expect(two.runtimeHash).toBe(one.runtimeHash); // threads are not part of the profile
    const hashes = new Set<string>();
    for (let i = 0; i < 100; i++) {
      hashes.add((await one.run(pkg, inputs)).outputHash);
      hashes.add((await two.run(pkg, inputs)).outputHash);
    }
    expect(hashes.size).toBe(1);
    if (name === 'iris-int8') {
      // Integer graphs are bit-exact across engines: wasm gives the very same outputHash.
      expect(hashTensors(await runOnWeb(pkg, inputs))).toBe([...hashes][0]);
    }
  });
});

describe('runtime profile', () => {
  it('names the engine, its exact version and every setting that changes bits', () => {
    const e = engine({ graphOptimizationLevel: 'all' });
    expect(e.profile).toEqual({
      engine: 'onnxruntime-node',
      engineVersion: '1.30.0',
      executionProvider: 'cpu',
      graphOptimizationLevel: 'all',
      arch: process.arch,
      options: {},
    });
    expect(e.runtimeHash).toBe(runtimeHash(e.profile));
    expect(engine().runtimeHash).not.toBe(e.runtimeHash);
  });
});

describe('refusing bad inputs, naming the field', () => {
  const iris = () => examplePackage('iris');
  const features = (shape: number[], data: number[]): Tensor => ({
    dtype: 'float32',
    shape,
    data: Float32Array.from(data),
  });

  it('an unknown input name', async () => {
    const pkg = await iris();
    await expect(
      engine().run(pkg, { features: features([1, 4], [1, 2, 3, 4]), extra: features([1], [1]) }),
    ).rejects.toMatchObject({
      code: 'INPUT_UNKNOWN',
      field: 'inputs.extra',
    });
    expect(() => inputsFromJson(pkg.manifest.inputs, { feature: [[1, 2, 3, 4]] })).toThrow(
      expect.objectContaining({ code: 'INPUT_UNKNOWN', field: 'inputs.feature' }),
    );
  });

  it('a missing input', async () => {
    await expect(engine().run(await iris(), {})).rejects.toMatchObject({
      code: 'INPUT_MISSING',
      field: 'inputs.features',
    });
  });

  it('a wrong dtype', async () => {
    const wrong: Tensor = { dtype: 'float64', shape: [1, 4], data: Float64Array.of(1, 2, 3, 4) };
    await expect(engine().run(await iris(), { features: wrong })).rejects.toMatchObject({
      code: 'INPUT_DTYPE',
      field: 'inputs.features.dtype',
    });
  });

  it('a wrong rank', async () => {
    await expect(engine().run(await iris(), { features: features([4], [1, 2, 3, 4]) })).rejects.toMatchObject(
      {
        code: 'INPUT_RANK',
        field: 'inputs.features.shape',
      },
    );
  });

  it('a wrong dim', async () => {
    await expect(
      engine().run(await iris(), { features: features([1, 5], [1, 2, 3, 4, 5]) }),
    ).rejects.toMatchObject({
      code: 'INPUT_DIM',
      field: 'inputs.features.shape[1]',
    });
  });

  it('a non-numeric value', async () => {
    const pkg = await iris();
    expect(() => inputsFromJson(pkg.manifest.inputs, { features: [[5.1, 'wide', 1.4, 0.2]] })).toThrow(
      expect.objectContaining({ code: 'INPUT_VALUE', field: 'inputs.features.data[1]' }),
    );
    const int8 = await examplePackage('iris-int8');
    expect(() => inputsFromJson(int8.manifest.inputs, { features: [[51, 35, 14.5, 2]] })).toThrow(
      expect.objectContaining({ code: 'INPUT_VALUE', field: 'inputs.features.data[2]' }),
    );
  });

  it('an oversized input', async () => {
    const big = features([1000, 4], new Array(4000).fill(1));
    await expect(
      engine({ limits: { maxInputBytes: 1024 } }).run(await iris(), { features: big }),
    ).rejects.toMatchObject({
      code: 'INPUT_TOO_LARGE',
      field: 'inputs.features',
    });
  });

  it('a corrupted ONNX file', async () => {
    const pkg = await iris();
    const bytes = pkg.files.get('model.onnx')!.slice();
    bytes.fill(0xff, 10, 200);
    const corrupted: ModelPackage = { ...pkg, files: new Map([['model.onnx', bytes]]) };
    const input = { features: features([1, 4], [1, 2, 3, 4]) };
    const error = await engine()
      .run(corrupted, input)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MODEL_INVALID', field: 'files.model.onnx' });
    // onnxruntime's own message is kept as the cause.
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect(String((error as Error).cause)).toMatch(/protobuf|parsing|Load model/i);
    await expect(engine().run(corrupted, input, { trace: true })).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      field: 'files.model.onnx',
    });
  });

  it('a model over the size limit', async () => {
    const pkg = await examplePackage('cnn');
    await expect(
      engine({ limits: { maxModelBytes: 4096 } }).run(pkg, exampleSamples(pkg, 'cnn')),
    ).rejects.toMatchObject({
      code: 'MODEL_TOO_LARGE',
      field: 'model',
    });
  });

  it('a run past its time limit', async () => {
    const pkg = await examplePackage('cnn');
    const image: Tensor = {
      dtype: 'float32',
      shape: [512, 1, 28, 28],
      data: new Float32Array(512 * 784).fill(0.5),
    };
    const e = engine();
    await e.run(pkg, { image }); // loading the model is not part of a run's time
    await expect(e.run(pkg, { image }, { timeoutMs: 1 })).rejects.toMatchObject({
      code: 'RUN_TIMEOUT',
      details: { timeoutMs: 1 },
    });
    await expect(engine({ limits: { timeoutMs: 1 } }).run(pkg, { image })).rejects.toMatchObject({
      code: 'RUN_TIMEOUT',
    });
    expect((await e.run(pkg, { image })).outputs.probabilities!.shape).toEqual([512, 10]);
  });

  it('keeps serving after every refusal', async () => {
    const pkg = await iris();
    const e = engine();
    await expect(e.run(pkg, {})).rejects.toThrow();
    const result = await e.run(pkg, { features: features([1, 4], [5.1, 3.5, 1.4, 0.2]) });
    expect(result.outputs.label!.data).toEqual(BigInt64Array.of(0n));
  });
});

describe('sessions', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('are created once per model (and once more for tracing), then reused', async () => {
    const create = vi.spyOn(ort.InferenceSession, 'create');
    const e = engine();
    const pkg = await examplePackage('iris');
    const inputs = exampleSamples(pkg, 'iris');
    // Concurrent first runs share one session being created.
    const first = await Promise.all(Array.from({ length: 10 }, () => e.run(pkg, inputs)));
    for (let i = 0; i < 20; i++) await e.run(pkg, inputs);
    expect(create).toHaveBeenCalledTimes(1);
    await e.run(pkg, inputs, { trace: true });
    await e.run(pkg, inputs, { trace: true });
    expect(create).toHaveBeenCalledTimes(2);
    expect(new Set(first.map((r) => r.outputHash)).size).toBe(1);
  });

  it('are released least recently used first, and by close, without changing results', async () => {
    const create = vi.spyOn(ort.InferenceSession, 'create');
    const release = vi.spyOn(
      (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype,
      'release',
    );
    const e = engine({ maxSessions: 2 });
    const packages = await Promise.all(EXAMPLES.map(examplePackage));
    const run = (i: number) => e.run(packages[i]!, exampleSamples(packages[i]!, EXAMPLES[i]!));
    const hashes = [];
    for (const i of [0, 1, 2]) hashes.push((await run(i)).outputHash); // iris evicted by cnn
    expect(create).toHaveBeenCalledTimes(3);
    await run(2);
    await run(1);
    expect(create).toHaveBeenCalledTimes(3); // both still cached
    expect((await run(0)).outputHash).toBe(hashes[0]); // iris again: loaded anew, evicting cnn (used before iris-int8)
    expect(create).toHaveBeenCalledTimes(4);
    await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(2));
    await e.close();
    await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(4));
    expect((await run(2)).outputHash).toBe(hashes[2]); // a closed engine loads again on demand
    expect(create).toHaveBeenCalledTimes(5);
  });

  it('are not kept when loading fails, so a fixed package loads on the next run', async () => {
    const pkg = await examplePackage('iris');
    const broken: ModelPackage = { ...pkg, files: new Map([['model.onnx', new Uint8Array(64).fill(7)]]) };
    const e = engine();
    await expect(e.run(broken, exampleSamples(pkg, 'iris'))).rejects.toMatchObject({ code: 'MODEL_INVALID' });
    expect((await e.run(pkg, exampleSamples(pkg, 'iris'))).outputs.label).toBeDefined();
  });
});

describe('models whose manifest does not describe the graph', () => {
  it('are refused at load, naming the manifest field', async () => {
    const pkg = await examplePackage('iris');
    const manifest = {
      ...pkg.manifest,
      outputs: [{ ...pkg.manifest.outputs[0]!, name: 'scores' }, pkg.manifest.outputs[1]!],
    };
    await expect(engine().run({ ...pkg, manifest }, exampleSamples(pkg, 'iris'))).rejects.toMatchObject({
      code: 'MODEL_INVALID',
      field: 'manifest.outputs[0].name',
    });
  });
});
