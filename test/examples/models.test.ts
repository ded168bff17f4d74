import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildExampleModels,
  DEFAULT_OUT_DIR,
  type ExampleModelName,
  type ExampleModelPaths,
} from '../../examples/models/build.mjs';
import { hashTensors, tensorsFromJson } from '../../src/protocol/encoding.js';
import { agree, type ComparisonPolicy } from '../../src/protocol/policy.js';
import type { Tensor, TensorMap } from '../../src/protocol/tensor.js';

type Ort = typeof ortNode | typeof ortWeb;
type Session = ortNode.InferenceSession | ortWeb.InferenceSession;
type Declared = Record<string, { type: string; shape: (number | string)[] }>;

/** What each model declares: the graph's inputs and outputs, and its comparison policy kind. */
const EXPECTED: Record<
  ExampleModelName,
  { inputs: Declared; outputs: Declared; policy: ComparisonPolicy['kind'] }
> = {
  iris: {
    inputs: { features: { type: 'float32', shape: ['batch', 4] } },
    outputs: {
      probabilities: { type: 'float32', shape: ['batch', 3] },
      label: { type: 'int64', shape: ['batch'] },
    },
    policy: 'tolerance',
  },
  'iris-int8': {
    inputs: { features: { type: 'uint8', shape: ['batch', 4] } },
    outputs: {
      logits: { type: 'int32', shape: ['batch', 3] },
      label: { type: 'int64', shape: ['batch'] },
    },
    policy: 'exact',
  },
  cnn: {
    inputs: { image: { type: 'float32', shape: ['batch', 1, 28, 28] } },
    outputs: { probabilities: { type: 'float32', shape: ['batch', 10] } },
    policy: 'tolerance',
  },
};
const NAMES = Object.keys(EXPECTED) as ExampleModelName[];

type ModelOptions = {
  name: string;
  version: string;
  description: string;
  license: string;
  policy: ComparisonPolicy;
  labels?: Record<string, string[]>;
};
type Holdout = { features: number[][]; labels: number[] };

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

function toOrt(ort: Ort, inputs: TensorMap): Record<string, ortNode.Tensor> {
  const feeds: Record<string, ortNode.Tensor> = {};
  for (const [name, t] of Object.entries(inputs))
    feeds[name] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, [
      ...t.shape,
    ]) as ortNode.Tensor;
  return feeds;
}

function fromOrt(outputs: Record<string, ortNode.Tensor | ortWeb.Tensor>): Record<string, Tensor> {
  const result: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(outputs))
    result[name] = { dtype: t.type, shape: [...t.dims], data: t.data } as Tensor;
  return result;
}

async function run(session: Session, ort: Ort, inputs: TensorMap): Promise<Record<string, Tensor>> {
  return fromOrt(await session.run(toOrt(ort, inputs) as never));
}

/** The Iris held-out rows as one batch, in the model's input dtype. */
function holdoutBatch(holdout: Holdout, dtype: 'float32' | 'uint8'): TensorMap {
  const data = holdout.features.flat();
  const shape = [holdout.features.length, 4];
  return {
    features: {
      dtype,
      shape,
      data: dtype === 'uint8' ? Uint8Array.from(data) : Float32Array.from(data),
    } as Tensor,
  };
}

function accuracy(label: Tensor, expected: number[]): number {
  const predicted = Array.from(label.data as BigInt64Array, Number);
  return predicted.filter((p, i) => p === expected[i]).length / expected.length;
}

function filesOf(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length))
    .sort();
}

let scratch: string;
let paths: Record<ExampleModelName, ExampleModelPaths>;
const sessions = new Map<ExampleModelName, ortNode.InferenceSession>();

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'glassbox-models-'));
  paths = buildExampleModels(join(scratch, 'a'));
  for (const name of NAMES) sessions.set(name, await ortNode.InferenceSession.create(paths[name].model));
});

afterAll(async () => {
  for (const session of sessions.values()) await session.release();
  rmSync(scratch, { recursive: true, force: true });
});

describe('the example model builder', () => {
  it('gives byte-identical files every run, and the same ones as the globalSetup build', () => {
    const again = join(scratch, 'b');
    buildExampleModels(again);
    const first = join(scratch, 'a');
    const files = filesOf(first);
    expect(files).toEqual(filesOf(again));
    expect(files).toEqual(expect.arrayContaining(NAMES.map((name) => join('/', name, 'model.onnx'))));
    for (const file of files) {
      const bytes = readFileSync(join(first, file));
      expect(Buffer.compare(bytes, readFileSync(join(again, file))), file).toBe(0);
      expect(Buffer.compare(bytes, readFileSync(join(DEFAULT_OUT_DIR, file))), `build/${file}`).toBe(0);
    }
  });

  it.each(NAMES)('%s: writes pack options a manifest can take', (name) => {
    const options = readJson(paths[name].options) as ModelOptions;
    expect(options).toMatchObject({ name, version: '1.0.0', license: 'Apache-2.0' });
    expect(options.description.length).toBeGreaterThan(40);
    expect(options.policy.kind).toBe(EXPECTED[name].policy);
    for (const [output, labels] of Object.entries(options.labels ?? {})) {
      expect(Object.keys(EXPECTED[name].outputs)).toContain(output);
      expect(labels).toEqual(['setosa', 'versicolor', 'virginica']);
    }
  });
});

describe.each(NAMES)('%s on onnxruntime-node', (name) => {
  it('declares the inputs and outputs it should, with a symbolic batch dim', () => {
    const session = sessions.get(name)!;
    const declared = (meta: readonly ortNode.InferenceSession.ValueMetadata[]): Declared =>
      Object.fromEntries(
        meta.map((m) => [
          m.name,
          m.isTensor ? { type: m.type, shape: [...m.shape] } : { type: '?', shape: [] },
        ]),
      );
    expect(declared(session.inputMetadata)).toEqual(EXPECTED[name].inputs);
    expect(declared(session.outputMetadata)).toEqual(EXPECTED[name].outputs);
  });

  it('runs its samples into outputs of the declared names, dtypes and shapes', async () => {
    const samples = tensorsFromJson(readJson(paths[name].samples), 'samples');
    expect(Object.keys(samples)).toEqual(Object.keys(EXPECTED[name].inputs));
    const batch = Object.values(samples)[0]!.shape[0]!;
    expect(batch).toBeGreaterThanOrEqual(2);
    for (const [input, spec] of Object.entries(EXPECTED[name].inputs)) {
      expect(samples[input]!.dtype).toBe(spec.type);
      expect(samples[input]!.shape).toEqual(spec.shape.map((d) => (d === 'batch' ? batch : d)));
    }
    const outputs = await run(sessions.get(name)!, ortNode, samples);
    expect(Object.keys(outputs).sort()).toEqual(Object.keys(EXPECTED[name].outputs).sort());
    for (const [output, spec] of Object.entries(EXPECTED[name].outputs)) {
      expect(outputs[output]!.dtype, output).toBe(spec.type);
      expect(outputs[output]!.shape, output).toEqual(spec.shape.map((d) => (d === 'batch' ? batch : d)));
    }
    if (outputs.probabilities) {
      const classes = outputs.probabilities.shape[1]!;
      const p = Array.from(outputs.probabilities.data as Float32Array);
      for (let row = 0; row < batch; row++) {
        const sum = p.slice(row * classes, (row + 1) * classes).reduce((a, b) => a + b, 0);
        expect(sum).toBeCloseTo(1, 5);
      }
    }
  });
});

describe('iris', () => {
  it('scores >= 90% on the held-out split', async () => {
    const holdout = readJson(paths.iris.data['holdout.json']!) as Holdout;
    expect(holdout.labels).toHaveLength(45);
    const outputs = await run(sessions.get('iris')!, ortNode, holdoutBatch(holdout, 'float32'));
    expect(accuracy(outputs.label!, holdout.labels)).toBeGreaterThanOrEqual(0.9);
  });

  it('classifies its samples, one flower of each species', async () => {
    const samples = tensorsFromJson(readJson(paths.iris.samples));
    const outputs = await run(sessions.get('iris')!, ortNode, samples);
    expect(Array.from(outputs.label!.data as BigInt64Array)).toEqual([0n, 1n, 2n]);
  });
});

describe('iris-int8', () => {
  const holdout = (): Holdout => readJson(paths['iris-int8'].data['holdout.json']!) as Holdout;

  it('is integer-only: no float tensor and no float op anywhere in the graph', () => {
    const { onnx } = onnxProto;
    const graph = onnx.GraphProto.fromObject(
      onnx.ModelProto.decode(readFileSync(paths['iris-int8'].model)).graph!,
    );
    const { FLOAT, FLOAT16, DOUBLE, BFLOAT16 } = onnx.TensorProto.DataType;
    const floats = new Set<number>([FLOAT, FLOAT16, DOUBLE, BFLOAT16]);
    for (const value of [...graph.input, ...graph.output])
      expect(floats.has(value.type?.tensorType?.elemType ?? FLOAT), String(value.name)).toBe(false);
    for (const tensor of graph.initializer)
      expect(floats.has(tensor.dataType ?? FLOAT), String(tensor.name)).toBe(false);
    const ops = new Set(graph.node.map((n) => n.opType));
    expect([...ops].sort()).toEqual(['Add', 'ArgMax', 'Cast', 'Clip', 'Div', 'MatMulInteger', 'Relu']);
    for (const cast of graph.node.filter((n) => n.opType === 'Cast')) {
      const to = cast.attribute?.find((a) => a.name === 'to')?.i;
      expect(Number(String(to))).toBe(onnx.TensorProto.DataType.UINT8);
    }
  });

  it('scores >= 85% on the held-out split', async () => {
    const outputs = await run(sessions.get('iris-int8')!, ortNode, holdoutBatch(holdout(), 'uint8'));
    expect(accuracy(outputs.label!, holdout().labels)).toBeGreaterThanOrEqual(0.85);
  });

  it('gives the same output bytes and outputHash on onnxruntime-node and onnxruntime-web (wasm)', async () => {
    ortWeb.env.wasm.numThreads = 1;
    const web = await ortWeb.InferenceSession.create(readFileSync(paths['iris-int8'].model));
    try {
      const inputs = [
        tensorsFromJson(readJson(paths['iris-int8'].samples)),
        holdoutBatch(holdout(), 'uint8'),
      ];
      for (const input of inputs) {
        const a = await run(sessions.get('iris-int8')!, ortNode, input);
        const b = await run(web, ortWeb, input);
        for (const name of ['logits', 'label']) {
          const bytes = ({ data }: Tensor) => {
            const view = data as Int32Array | BigInt64Array;
            return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
          };
          expect(Buffer.compare(bytes(a[name]!), bytes(b[name]!)), name).toBe(0);
        }
        expect(hashTensors(a)).toBe(hashTensors(b));
      }
    } finally {
      await web.release();
    }
  });
});

describe.each(['iris', 'cnn'] as const)('%s on onnxruntime-web', (name) => {
  it('agrees with onnxruntime-node under the model’s tolerance policy', async () => {
    ortWeb.env.wasm.numThreads = 1;
    const web = await ortWeb.InferenceSession.create(readFileSync(paths[name].model));
    try {
      const samples = tensorsFromJson(readJson(paths[name].samples));
      const policy = (readJson(paths[name].options) as ModelOptions).policy;
      const a = await run(sessions.get(name)!, ortNode, samples);
      const b = await run(web, ortWeb, samples);
      expect(agree(policy, a, b)).toEqual({ agree: true });
    } finally {
      await web.release();
    }
  });
});
