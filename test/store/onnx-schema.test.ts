import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import onnxProto from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { DEFAULT_OUT_DIR } from '../../examples/models/build.mjs';
import { isGlassboxError, type GlassboxError } from '../../src/protocol/index.js';
import { readOnnxSchema } from '../../src/store/index.js';
import { ELEM, onnxModel, tinyClassifier } from './onnx-fixture.js';

function thrown(fn: () => unknown): GlassboxError {
  try {
    fn();
  } catch (error) {
    if (isGlassboxError(error)) return error;
    throw error;
  }
  throw new Error('expected a GlassboxError, but nothing was thrown');
}

describe('readOnnxSchema', () => {
  it('reads the example models’ inputs and outputs: names, dtypes, symbolic dims', () => {
    // built by vitest's globalSetup (test/setup/models.ts)
    const schema = (name: string) => readOnnxSchema(readFileSync(join(DEFAULT_OUT_DIR, name, 'model.onnx')));
    expect(schema('iris')).toEqual({
      inputs: [{ name: 'features', dtype: 'float32', shape: ['batch', 4] }],
      outputs: [
        { name: 'probabilities', dtype: 'float32', shape: ['batch', 3] },
        { name: 'label', dtype: 'int64', shape: ['batch'] },
      ],
    });
    expect(schema('iris-int8')).toEqual({
      inputs: [{ name: 'features', dtype: 'uint8', shape: ['batch', 4] }],
      outputs: [
        { name: 'logits', dtype: 'int32', shape: ['batch', 3] },
        { name: 'label', dtype: 'int64', shape: ['batch'] },
      ],
    });
    expect(schema('cnn')).toEqual({
      inputs: [{ name: 'image', dtype: 'float32', shape: ['batch', 1, 28, 28] }],
      outputs: [{ name: 'probabilities', dtype: 'float32', shape: ['batch', 10] }],
    });
  });

  it('maps every ONNX element type Glassbox carries to its dtype', () => {
    const types: [number, string][] = [
      [ELEM.FLOAT, 'float32'],
      [ELEM.DOUBLE, 'float64'],
      [ELEM.INT8, 'int8'],
      [ELEM.UINT8, 'uint8'],
      [ELEM.INT16, 'int16'],
      [ELEM.INT32, 'int32'],
      [ELEM.INT64, 'int64'],
      [ELEM.BOOL, 'bool'],
      [ELEM.STRING, 'string'],
    ];
    const bytes = onnxModel({
      inputs: types.map(([elemType], i) => ({ name: `in${i}`, elemType, dims: [2] })),
      outputs: [{ name: 'out', elemType: ELEM.FLOAT, dims: [2] }],
    });
    expect(readOnnxSchema(bytes).inputs.map((s) => s.dtype)).toEqual(types.map(([, dtype]) => dtype));
  });

  it("reads fixed, symbolic and unknown dims ('?'), and scalars", () => {
    const bytes = onnxModel({
      inputs: [
        { name: 'x', elemType: ELEM.FLOAT, dims: ['batch', null, 0, 7] },
        { name: 'scalar', elemType: ELEM.INT64, dims: [] },
      ],
      outputs: [{ name: 'y', elemType: ELEM.FLOAT, dims: ['batch', 'sequence'] }],
    });
    expect(readOnnxSchema(bytes)).toEqual({
      inputs: [
        { name: 'x', dtype: 'float32', shape: ['batch', '?', 0, 7] },
        { name: 'scalar', dtype: 'int64', shape: [] },
      ],
      outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 'sequence'] }],
    });
  });

  it('leaves out graph inputs that are initializers', () => {
    const bytes = onnxModel({
      inputs: [{ name: 'x', elemType: ELEM.FLOAT, dims: [1] }],
      outputs: [{ name: 'y', elemType: ELEM.FLOAT, dims: [1] }],
      initializers: ['weight', 'bias'],
    });
    expect(readOnnxSchema(bytes).inputs.map((s) => s.name)).toEqual(['x']);
  });

  it('refuses element types Glassbox does not carry, naming the tensor', () => {
    for (const [elemType, name] of [
      [ELEM.FLOAT16, 'FLOAT16'],
      [ELEM.BFLOAT16, 'BFLOAT16'],
      [ELEM.UINT16, 'UINT16'],
      [ELEM.UINT64, 'UINT64'],
      [ELEM.COMPLEX64, 'COMPLEX64'],
      [ELEM.UNDEFINED, 'UNDEFINED'],
    ] as const) {
      const error = thrown(() =>
        readOnnxSchema(
          onnxModel({
            inputs: [{ name: 'x', elemType: ELEM.FLOAT, dims: [1] }],
            outputs: [{ name: 'half', elemType, dims: [1] }],
          }),
        ),
      );
      expect(error.code).toBe('MODEL_INVALID');
      expect(error.shortMessage).toBe(
        `ONNX model: output "half" has element type ${name} (${elemType}), which Glassbox does not carry`,
      );
      expect(error.field).toBe('outputs.half.dtype');
    }
  });

  it('refuses tensors of unknown rank and values that are not tensors, naming them', () => {
    const noShape = thrown(() =>
      readOnnxSchema(
        onnxModel({
          inputs: [{ name: 'anything', elemType: ELEM.FLOAT }],
          outputs: [{ name: 'y', elemType: ELEM.FLOAT, dims: [1] }],
        }),
      ),
    );
    expect(noShape.code).toBe('MODEL_INVALID');
    expect(noShape.shortMessage).toContain('input "anything" has no shape');

    const { onnx } = onnxProto;
    const sequence = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ version: 13 }],
      graph: {
        input: [{ name: 'x', type: { tensorType: { elemType: ELEM.FLOAT, shape: { dim: [] } } } }],
        output: [
          { name: 'seq', type: { sequenceType: { elemType: { tensorType: { elemType: ELEM.FLOAT } } } } },
        ],
      },
    }).finish();
    const error = thrown(() => readOnnxSchema(sequence));
    expect(error.code).toBe('MODEL_INVALID');
    expect(error.shortMessage).toBe(
      'ONNX model: output "seq" is a sequenceType; Glassbox carries tensors only',
    );
  });

  it('refuses bytes that are not an ONNX model', () => {
    const utf8 = new TextEncoder();
    const cases: [Uint8Array, string][] = [
      [new Uint8Array(), 'not an ONNX model: it has no ir_version'],
      [utf8.encode('{"this": "is JSON"}'), 'not an ONNX model'],
      [utf8.encode('PK\u0003\u0004 a zip file'), 'not an ONNX model'],
      [new Uint8Array(64).fill(0xff), 'not an ONNX model'],
    ];
    for (const [bytes, message] of cases) {
      const error = thrown(() => readOnnxSchema(bytes));
      expect(error.code).toBe('MODEL_INVALID');
      expect(error.shortMessage.startsWith(message)).toBe(true);
    }
  });

  it('refuses an ONNX file cut anywhere inside its graph', () => {
    const bytes = tinyClassifier();
    const { onnx } = onnxProto;
    const model = onnx.ModelProto.decode(bytes);
    // The graph is field 7: it starts where the fields before it end, and is as long as removing it saves.
    const before = onnx.ModelProto.encode({
      irVersion: model.irVersion,
      producerName: model.producerName,
      docString: model.docString,
    }).finish().length;
    const withoutGraph = onnx.ModelProto.encode({ ...model, graph: null }).finish().length;
    const graphEnd = before + (bytes.length - withoutGraph);
    fc.assert(
      fc.property(fc.integer({ min: before + 1, max: graphEnd - 1 }), (cut) => {
        const error = thrown(() => readOnnxSchema(bytes.subarray(0, cut)));
        expect(error.code).toBe('MODEL_INVALID');
        expect(error.shortMessage).toMatch(/^not an ONNX model: it does not decode/);
      }),
    );
  });

  it('refuses a model whose graph takes no inputs or gives no outputs', () => {
    const { onnx } = onnxProto;
    const noOutputs = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ version: 13 }],
      graph: { input: [{ name: 'x', type: { tensorType: { elemType: ELEM.FLOAT, shape: { dim: [] } } } }] },
    }).finish();
    expect(thrown(() => readOnnxSchema(noOutputs)).shortMessage).toBe(
      'not an ONNX model: its graph has no outputs',
    );
    const onlyInitializers = onnxModel({
      inputs: [],
      outputs: [{ name: 'y', elemType: ELEM.FLOAT, dims: [1] }],
      initializers: ['w'],
    });
    expect(thrown(() => readOnnxSchema(onlyInitializers)).code).toBe('MODEL_INVALID');
  });

  it('on any bytes, or a model with any byte changed, answers a schema or MODEL_INVALID, never another error', () => {
    const model = tinyClassifier('a doc string to give the model some length');
    const outcome = (bytes: Uint8Array) => {
      try {
        readOnnxSchema(bytes);
      } catch (error) {
        expect(isGlassboxError(error, 'MODEL_INVALID')).toBe(true);
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), outcome), { numRuns: 500 });
    fc.assert(
      fc.property(fc.nat(model.length - 1), fc.integer({ min: 1, max: 255 }), (at, mask) => {
        const changed = model.slice();
        changed[at]! ^= mask;
        outcome(changed);
      }),
      { numRuns: 500 },
    );
  });
});
