import fc from 'fast-check';
import { keccak256, type Hex } from 'viem';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeTensors, hashTensors } from '../../src/protocol/encoding.js';
import { traceTree, verifyTraceProof } from '../../src/protocol/merkle.js';
import { ZERO_HASH } from '../../src/protocol/receipt.js';
import type { GraphOptimizationLevel } from '../../src/protocol/runtime-profile.js';
import type { Tensor } from '../../src/protocol/tensor.js';
import { createOnnxEngine } from '../../src/runtime/onnx/engine.js';
import {
  firstDivergence,
  traceOf,
  traceStepPositions,
  TRACE_STEPS,
  type TensorEngine,
  type TraceStep,
} from '../../src/runtime/index.js';
import { BENCH_MODELS, benchModelOnnx, benchSample } from '../../examples/models/bench-models.mjs';
import { EXAMPLES, examplePackage, exampleSamples } from '../support/examples.js';
import {
  T,
  convMulModel,
  intAttr,
  node,
  onnx,
  onnxModel,
  packageOf,
  perturbWeight,
  valueInfo,
} from './models.js';

const LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];

const engines: TensorEngine[] = [];
function engine(options: Parameters<typeof createOnnxEngine>[0] = {}): TensorEngine {
  const e = createOnnxEngine(options);
  engines.push(e);
  return e;
}
afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
});

describe.each(EXAMPLES)('tracing %s', (name) => {
  it.each(LEVELS)('at %s: a stable root, spaced steps, the outputs of the same run', async (level) => {
    const pkg = await examplePackage(name);
    const inputs = exampleSamples(pkg, name);
    const one = engine({ graphOptimizationLevel: level, intraOpNumThreads: 1 });
    const two = engine({ graphOptimizationLevel: level, intraOpNumThreads: 2 });
    const plain = await one.run(pkg, inputs);
    const traced = await one.run(pkg, inputs, { trace: true });
    expect(plain.traceRoot).toBe(ZERO_HASH);
    expect(plain.trace).toBeUndefined();
    for (let i = 0; i < 5; i++) {
      const again = await (i % 2 ? one : two).run(pkg, inputs, { trace: true });
      expect(again.traceRoot).toBe(traced.traceRoot);
      expect(firstDivergence(traced.trace!.steps, again.trace!.steps)).toBeUndefined();
    }
    // Measured: on the example models, exposing the intermediates blocks no fusion that changes
    // bits, at any level (unlike Conv+Mul below), so traced and untraced runs agree.
    expect(traced.outputHash).toBe(plain.outputHash);

    const steps = traced.trace!.steps;
    const nodeOutputs = await graphNodeOutputs(pkg.files.get('model.onnx')!);
    expect(steps.map((s) => s.output)).toEqual(
      traceStepPositions(nodeOutputs.length).map((i) => nodeOutputs[i]),
    );
    expect(steps.at(-1)!.output).toBe(nodeOutputs.at(-1));
    for (const output of pkg.manifest.outputs) {
      const step = steps.find((s) => s.output === output.name);
      if (step) expect(step.hash).toBe(hashTensors({ [output.name]: traced.outputs[output.name]! }));
    }
    const tree = traceTree(steps.map((s) => s.hash));
    expect(tree.root).toBe(traced.traceRoot);
    for (const s of steps)
      expect(verifyTraceProof(traced.traceRoot, s.index, s.hash, tree.proof(s.index))).toBe(true);
  });
});

async function graphNodeOutputs(bytes: Uint8Array): Promise<string[]> {
  const model = onnx.ModelProto.decode(bytes);
  return model.graph!.node!.flatMap((n) => n.output!.filter((o) => o !== ''));
}

describe('a traced run is its own execution', () => {
  it('blocks fusions that consume an intermediate, so its outputs may differ from an untraced run', async () => {
    const pkg = await packageOf(convMulModel(), 'conv-mul');
    const x: Tensor = {
      dtype: 'float32',
      shape: [2, 3, 16, 16],
      data: Float32Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(i)),
    };
    const outcome: Record<string, boolean> = {};
    for (const level of LEVELS) {
      const e = engine({ graphOptimizationLevel: level });
      const plain = await e.run(pkg, { x });
      const traced = await e.run(pkg, { x }, { trace: true });
      const again = await e.run(pkg, { x }, { trace: true });
      // Whatever the level, a traced run is reproducible and its outputs are the trace's last step.
      expect(again.outputHash).toBe(traced.outputHash);
      expect(again.traceRoot).toBe(traced.traceRoot);
      expect(traced.trace!.steps.at(-1)!.hash).toBe(hashTensors({ y: traced.outputs.y! }));
      outcome[level] = traced.outputHash === plain.outputHash;
    }
    // Measured with onnxruntime 1.30: from `basic` on, the untraced graph folds the Mul into the
    // Conv weights (ConvMulFusion); the traced graph must keep `c`, so it cannot.
    expect(outcome).toEqual({ disabled: true, basic: false, extended: false, all: false });
  });
});

describe('firstDivergence', () => {
  it('locates a changed weight at the first operator that reads it', async () => {
    const pkg = await examplePackage('cnn');
    const inputs = exampleSamples(pkg, 'cnn');
    const honest = await engine().run(pkg, inputs, { trace: true });
    // A provider that runs a subtly different model: conv2's first weight is off by 1e-3.
    const tampered = await engine().run(await perturbWeight(pkg, 'C2', 1e-3), inputs, { trace: true });
    const divergence = firstDivergence(honest.trace!.steps, tampered.trace!.steps)!;
    expect(divergence.a).toMatchObject({ node: 'Conv:conv2', op: 'Conv', output: 'conv2' });
    expect(divergence.b!.output).toBe('conv2');
    expect(divergence.a!.hash).not.toBe(divergence.b!.hash);
    const before = honest.trace!.steps.slice(0, divergence.index);
    expect(before.map((s) => s.output)).toEqual(['conv1', 'relu1', 'pool1']);
    expect(tampered.trace!.steps.slice(0, divergence.index)).toEqual(before);
  });

  it('shows where two optimisation levels part ways', async () => {
    const pkg = await examplePackage('cnn');
    const inputs = exampleSamples(pkg, 'cnn');
    const basic = await engine({ graphOptimizationLevel: 'basic' }).run(pkg, inputs, { trace: true });
    const all = await engine({ graphOptimizationLevel: 'all' }).run(pkg, inputs, { trace: true });
    const divergence = firstDivergence(basic.trace!.steps, all.trace!.steps);
    if (basic.traceRoot === all.traceRoot) {
      expect(divergence).toBeUndefined();
    } else {
      // Measured on x64 with AVX-512: `all` runs the convolutions in NCHWc blocks and differs from
      // the first Conv on; elementwise and pooling steps cannot start a divergence.
      expect(divergence!.a!.op).toBe('Conv');
    }
  });

  it('is the first index whose hash or tensor differs, or where one trace ends', () => {
    const hashArb = fc
      .uint8Array({ minLength: 32, maxLength: 32 })
      .map((b) => `0x${Buffer.from(b).toString('hex')}` as Hex);
    const stepsArb = fc.array(hashArb, { minLength: 1, maxLength: 20 }).map((hashes) =>
      hashes.map((hash, index): TraceStep => ({
        index,
        node: `n${index}`,
        op: 'Relu',
        output: `t${index}`,
        hash,
      })),
    );
    fc.assert(
      fc.property(stepsArb, fc.nat(), hashArb, (steps, at, other) => {
        expect(firstDivergence(steps, steps)).toBeUndefined();
        const i = at % steps.length;
        const changed = steps.map((s, j) => (j === i ? { ...s, hash: other } : s));
        const d = firstDivergence(steps, changed);
        if (other === steps[i]!.hash) expect(d).toBeUndefined();
        else expect(d).toEqual({ index: i, a: steps[i], b: changed[i] });
        expect(firstDivergence(steps, steps.slice(0, i))).toEqual({ index: i, a: steps[i], b: undefined });
        expect(firstDivergence(steps.slice(0, i), steps)).toEqual({ index: i, a: undefined, b: steps[i] });
        expect(traceOf(steps).root).toBe(traceTree(steps.map((s) => s.hash)).root);
      }),
    );
  });
});

describe('tracing graphs beyond the examples', () => {
  it('hashes shapes, float16 and uint64 tensors and bools, and skips sequences', async () => {
    // Eight node outputs, so that a trace (TRACE_STEPS of them at most) takes every one.
    const model = onnxModel({
      inputs: [valueInfo('x', T.float32, ['n', 3])],
      outputs: [valueInfo('y', T.float32, ['n', 3])],
      nodes: [
        node('Mul', ['x', 'k'], ['m']),
        node('Shape', ['m'], ['shape']),
        node('Cast', ['m'], ['half'], [intAttr('to', T.float16)]),
        node('Cast', ['shape'], ['wide'], [intAttr('to', T.uint64)]),
        node('Dropout', ['half'], ['dropped', 'mask'], [], ''), // unnamed: traced as Dropout#4
        node('SequenceConstruct', ['m', 'm'], ['seq']),
        node('SequenceAt', ['seq', 'zero'], ['y']),
      ],
      initializers: [
        onnx.TensorProto.create({ name: 'k', dataType: T.float32, dims: [1], floatData: [2] }),
        onnx.TensorProto.create({ name: 'zero', dataType: T.int64, dims: [], int64Data: [0] }),
      ],
    });
    const pkg = await packageOf(model, 'odd');
    const x: Tensor = { dtype: 'float32', shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6) };
    for (const level of LEVELS) {
      const e = engine({ graphOptimizationLevel: level });
      const result = await e.run(pkg, { x }, { trace: true });
      const steps = result.trace!.steps;
      expect(steps.map((s) => s.output)).toEqual(['m', 'shape', 'half', 'wide', 'dropped', 'mask', 'y']);
      expect(steps.map((s) => s.index)).toEqual(steps.map((_, i) => i));
      expect(steps[4]).toMatchObject({ node: 'Dropout#4', op: 'Dropout' });
      expect(steps.at(-1)!.hash).toBe(hashTensors({ y: result.outputs.y! }));
      expect(steps[1]!.hash).toBe(
        hashTensors({ shape: { dtype: 'int64', shape: [2], data: BigInt64Array.of(2n, 3n) } }),
      );
      expect(steps[5]!.hash).toBe(
        hashTensors({ mask: { dtype: 'bool', shape: [2, 3], data: new Uint8Array(6).fill(1) } }),
      );
      // float16 and uint64 use the canonical layout with ONNX's dtype code: the bytes of an int16
      // (int64) tensor of the same bits, but for the dtype byte (after u32 length and the name).
      const half = encodeTensors({
        half: {
          dtype: 'int16',
          shape: [2, 3],
          data: Int16Array.of(0x4000, 0x4400, 0x4600, 0x4800, 0x4900, 0x4a00),
        },
      });
      half[8] = T.float16;
      expect(steps[2]!.hash).toBe(keccak256(half));
      const wide = encodeTensors({ wide: { dtype: 'int64', shape: [2], data: BigInt64Array.of(2n, 3n) } });
      wide[8] = T.uint64;
      expect(steps[3]!.hash).toBe(keccak256(wide));
      expect((await e.run(pkg, { x }, { trace: true })).traceRoot).toBe(result.traceRoot);
    }
  });
});

describe.each(EXAMPLES)('re-running %s only up to one step', (name) => {
  it.each(LEVELS)('at %s: every step of a cut graph hashes as in the whole traced run', async (level) => {
    const pkg = await examplePackage(name);
    const inputs = exampleSamples(pkg, name);
    const e = engine({ graphOptimizationLevel: level, maxSessions: 64 });
    const whole = await e.run(pkg, inputs, { trace: true });
    const steps = whole.trace!.steps;
    const probes = [
      ...new Set([0, 1, Math.floor(steps.length / 3), Math.floor(steps.length / 2), steps.length - 1]),
    ];
    for (const step of probes.filter((s) => s < steps.length)) {
      const partial = await e.traceStep(pkg, inputs, step);
      expect(partial.step).toEqual(steps[step]);
    }
  });
});

describe('checkpoints on a deep graph', () => {
  it('trace TRACE_STEPS evenly spaced node outputs, and a cut after any of them hashes as the whole run', async () => {
    const spec = BENCH_MODELS.find((m) => m.name === 'bench-tiny')!; // 27 node outputs
    const bytes = benchModelOnnx(spec);
    const pkg = await packageOf(bytes, spec.name);
    const x: Tensor = { dtype: 'float32', shape: [1, 64], data: Float32Array.from(benchSample()) };
    const nodeOutputs = await graphNodeOutputs(bytes);
    const e = engine({ maxSessions: 64 });
    const whole = await e.run(pkg, { x }, { trace: true });
    const steps = whole.trace!.steps;
    expect(steps).toHaveLength(TRACE_STEPS);
    expect(steps.map((s) => s.output)).toEqual(
      [2, 5, 9, 12, 15, 19, 22, 26].map((i) => nodeOutputs[i]), // floor((i + 1) * 27 / 8) - 1
    );
    for (const step of steps.keys()) expect((await e.traceStep(pkg, { x }, step)).step).toEqual(steps[step]);
  });

  it('traceStepPositions: min(n, TRACE_STEPS) increasing positions in range, ending with the last', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000 }), (n) => {
        const positions = traceStepPositions(n);
        expect(positions).toHaveLength(Math.min(n, TRACE_STEPS));
        expect(positions.at(-1)).toBe(n - 1);
        expect(positions[0]).toBeGreaterThanOrEqual(0);
        positions.slice(1).forEach((p, i) => expect(p).toBeGreaterThan(positions[i]!));
        if (n <= TRACE_STEPS) expect(positions).toEqual([...Array(n).keys()]);
      }),
    );
  });
});

describe('cutting at the last node', () => {
  it('keeps every step of a last node with several outputs, past a sequence that is not traced', async () => {
    const model = onnxModel({
      inputs: [valueInfo('x', T.float32, [1, 4])],
      outputs: [valueInfo('values', T.float32, [1, 2])],
      nodes: [
        node('SequenceConstruct', ['x', 'x'], ['seq']),
        node('SequenceAt', ['seq', 'zero'], ['b']),
        node('TopK', ['b', 'k'], ['values', 'indices']),
      ],
      initializers: [
        onnx.TensorProto.create({ name: 'zero', dataType: T.int64, dims: [], int64Data: [0] }),
        onnx.TensorProto.create({ name: 'k', dataType: T.int64, dims: [1], int64Data: [2] }),
      ],
    });
    const pkg = await packageOf(model, 'topk');
    const x: Tensor = { dtype: 'float32', shape: [1, 4], data: Float32Array.of(3, 1, 4, 2) };
    const e = engine({ maxSessions: 16 });
    const steps = (await e.run(pkg, { x }, { trace: true })).trace!.steps;
    expect(steps.map((s) => s.output)).toEqual(['b', 'values', 'indices']);
    for (const step of steps.keys()) expect((await e.traceStep(pkg, { x }, step)).step).toEqual(steps[step]);
  });
});

describe('traceStep refusals', () => {
  it('names a step the trace does not have, and a step that is not an index', async () => {
    const pkg = await examplePackage('iris');
    const inputs = exampleSamples(pkg, 'iris');
    const e = engine();
    const { trace } = await e.run(pkg, inputs, { trace: true });
    await expect(e.traceStep(pkg, inputs, trace!.steps.length)).rejects.toMatchObject({
      code: 'REQUEST_INVALID',
      field: 'step',
    });
    await expect(e.traceStep(pkg, inputs, -1)).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
  });
});
