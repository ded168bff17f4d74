/**
 * `iris-int8`: the Iris MLP quantized so that it runs on integers only, and so gives the same bits
 * on every engine and machine (float kernels differ by engine; integer ones can't).
 *
 * Input: each measurement in millimetres, `q = round(cm * 10)`, as uint8. Iris is measured to
 * 0.1 cm, so this loses nothing on the real data. Then, with symmetric per-tensor int8 weights:
 *
 *   acc1   = MatMulInteger(q, W1q) + B1q              int32, ≈ hidden pre-activation / s1
 *   hidden = Cast<uint8>(Clip(Relu(acc1) / 2^k, 0, 255))   round-half-up: 2^(k-1) is folded into B1q
 *   logits = MatMulInteger(hidden, W2q) + B2q          int32, ≈ float logits / (s1 · 2^k · s2)
 *   label  = ArgMax(logits)
 *
 * Folding 2^(k-1) into the bias before Relu is exact: Relu(x + h) and Relu(x) + h floor to the same
 * multiple of 2^k for every integer x (both are below h, so 0, whenever x < 0).
 */
import { elemType, encodeModel, initializer, intAttr, node, valueInfo } from './onnx-builder.mjs';
import { batchTensor } from './example.mjs';
import { foldScaler, sampleRows } from './iris.mjs';
import { argmax } from './mlp.mjs';

/** Millimetres per input step: q = round(cm / INPUT_SCALE_CM). */
const INPUT_SCALE_CM = 0.1;

/**
 * @typedef {object} QuantizedMlp
 * @property {number[][]} w1 int8, [4][hidden]
 * @property {number[]} b1 int32, with the rounding offset 2^(k-1) folded in
 * @property {number} shift k: the hidden layer is divided by 2^k
 * @property {number[][]} w2 int8, [hidden][classes]
 * @property {number[]} b2 int32
 * @property {number} logitScale float logits ≈ integer logits × logitScale
 */

/**
 * @param {number[]} row measurements in cm
 * @returns {number[]} uint8 millimetres
 */
export function quantizeFeatures(row) {
  return row.map((cm) => Math.min(255, Math.max(0, Math.round(cm / INPUT_SCALE_CM))));
}

/**
 * Symmetric int8 with the largest |w| at ±63, not ±127: x64 CPUs without VNNI multiply uint8 by
 * int8 with pmaddubsw, which adds two products in a saturating int16; 2 · 255 · 63 = 32130 still
 * fits, so the integer results are the same on every CPU, for every uint8 input.
 */
const WEIGHT_MAX = 63;

/**
 * w ≈ round(w / scale) · scale.
 * @param {number[][]} w
 * @returns {{ q: number[][], scale: number }}
 */
function quantizeWeights(w) {
  const scale = Math.max(...w.flat().map(Math.abs)) / WEIGHT_MAX;
  return { q: w.map((row) => row.map((v) => Math.round(v / scale))), scale };
}

/**
 * `x · w + b` in integers (exact in float64 at these sizes).
 * @param {number[]} x
 * @param {number[][]} w
 * @param {number[]} b
 * @returns {number[]}
 */
function affineInt(x, w, b) {
  return b.map((bk, k) => x.reduce((s, xi, i) => s + xi * w[i][k], bk));
}

/**
 * Picks the smallest shift k that keeps every training row's hidden units within uint8.
 * @param {import('./iris-data.mjs').TrainedIris} trained
 * @returns {QuantizedMlp}
 */
export function quantizeIris(trained) {
  const folded = foldScaler(trained);
  const layer1 = quantizeWeights(folded.w1.map((row) => row.map((w) => w * INPUT_SCALE_CM)));
  const b1 = folded.b1.map((b) => Math.round(b / layer1.scale));
  const peak = Math.max(
    ...trained.train.features.flatMap((row) => affineInt(quantizeFeatures(row), layer1.q, b1)),
  );
  let shift = 0;
  while (peak / 2 ** shift > 255) shift++;
  const hiddenScale = layer1.scale * 2 ** shift;
  const layer2 = quantizeWeights(trained.net.w2);
  const logitScale = hiddenScale * layer2.scale;
  return {
    w1: layer1.q,
    b1: b1.map((b) => b + (shift > 0 ? 2 ** (shift - 1) : 0)),
    shift,
    w2: layer2.q,
    b2: trained.net.b2.map((b) => Math.round(b / logitScale)),
    logitScale,
  };
}

/**
 * What the ONNX graph computes, in JS (for the build log's accuracy).
 * @param {QuantizedMlp} mlp
 * @param {number[]} q uint8 features
 * @returns {number[]} int32 logits
 */
export function forwardInt(mlp, q) {
  const hidden = affineInt(q, mlp.w1, mlp.b1).map((v) =>
    Math.min(255, Math.floor(Math.max(0, v) / 2 ** mlp.shift)),
  );
  return affineInt(hidden, mlp.w2, mlp.b2);
}

/**
 * @param {QuantizedMlp} mlp
 * @returns {Uint8Array}
 */
function irisInt8Onnx(mlp) {
  const hidden = mlp.b1.length;
  const classes = mlp.b2.length;
  return encodeModel({
    name: 'iris_int8',
    doc: 'Iris species from 4 flower measurements in mm (uint8); an integer-only int8 MLP, bit-exact everywhere.',
    opset: 14, // Relu on int32
    inputs: [valueInfo('features', 'uint8', ['batch', 4])],
    outputs: [valueInfo('logits', 'int32', ['batch', classes]), valueInfo('label', 'int64', ['batch'])],
    initializers: [
      initializer('W1', 'int8', [4, hidden], mlp.w1.flat()),
      initializer('B1', 'int32', [hidden], mlp.b1),
      initializer('Shift', 'int32', [], [2 ** mlp.shift]),
      initializer('Zero', 'int32', [], [0]),
      initializer('U8Max', 'int32', [], [255]),
      initializer('W2', 'int8', [hidden, classes], mlp.w2.flat()),
      initializer('B2', 'int32', [classes], mlp.b2),
    ],
    nodes: [
      node('MatMulInteger', ['features', 'W1'], ['hidden_acc']),
      node('Add', ['hidden_acc', 'B1'], ['hidden_linear']),
      node('Relu', ['hidden_linear'], ['hidden_relu']),
      node('Div', ['hidden_relu', 'Shift'], ['hidden_scaled']),
      node('Clip', ['hidden_scaled', 'Zero', 'U8Max'], ['hidden_clipped']),
      node('Cast', ['hidden_clipped'], ['hidden'], [intAttr('to', elemType('uint8'))]),
      node('MatMulInteger', ['hidden', 'W2'], ['logits_acc']),
      node('Add', ['logits_acc', 'B2'], ['logits']),
      node('ArgMax', ['logits'], ['label'], [intAttr('axis', 1), intAttr('keepdims', 0)]),
    ],
  });
}

/**
 * @param {import('./iris-data.mjs').TrainedIris} trained
 * @returns {import('./example.mjs').ExampleModel}
 */
export function irisInt8Model(trained) {
  const { classes, holdout } = trained;
  const mlp = quantizeIris(trained);
  const quantizedHoldout = { features: holdout.features.map(quantizeFeatures), labels: holdout.labels };
  const hits = quantizedHoldout.features.filter(
    (q, i) => argmax(forwardInt(mlp, q)) === holdout.labels[i],
  ).length;
  return {
    onnx: irisInt8Onnx(mlp),
    options: {
      name: 'iris-int8',
      version: '1.0.0',
      description:
        `Iris species (${classes.join(', ')}), integer-only so the outputs are bit-exact on any machine and engine. ` +
        `Input features [batch, 4], uint8: sepal length, sepal width, petal length, petal width in millimetres, ` +
        `i.e. round(cm * 10) clamped to 0..255 (lossless for Iris, measured to 0.1 cm). ` +
        `The iris model's MLP with 7-bit int8 weights (|w| <= 63, so no CPU's int16 pair sums saturate) and int32 biases (MatMulInteger, Add, Relu, Div by 2^${mlp.shift}, ` +
        `Clip, Cast to uint8); logits are int32, about float logits / ${(1 / mlp.logitScale).toPrecision(6)}; ` +
        `label is their argmax.`,
      license: 'Apache-2.0',
      policy: { kind: 'exact' },
      labels: { logits: classes, label: classes },
    },
    samples: { features: batchTensor('uint8', sampleRows(trained).map(quantizeFeatures)) },
    data: { 'holdout.json': quantizedHoldout },
    summary: `4 -> 16 -> ${classes.length} integer-only MLP, shift 2^${mlp.shift}, held-out accuracy ${hits}/${holdout.labels.length} (JS reference)`,
  };
}
