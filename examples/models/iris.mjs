/**
 * `iris`: the Iris MLP (4 -> 16 Relu -> 3 softmax) in float32, taking raw measurements in cm.
 * The training set's standardisation is folded into the first layer:
 * ((x - mean) / std) · W1 + b1 = x · (W1 / std) + (b1 - (mean / std) · W1).
 */
import { encodeModel, initializer, intAttr, node, valueInfo } from './onnx-builder.mjs';
import { batchTensor } from './example.mjs';

/**
 * The first layer with the standardisation folded in.
 * @param {import('./iris-data.mjs').TrainedIris} trained
 * @returns {{ w1: number[][], b1: number[] }} for raw cm inputs
 */
export function foldScaler(trained) {
  const { mean, std } = trained.scaler;
  const { w1, b1 } = trained.net;
  return {
    w1: w1.map((row, j) => row.map((w) => w / std[j])),
    b1: b1.map((b, k) => b - w1.reduce((s, row, j) => s + (mean[j] / std[j]) * row[k], 0)),
  };
}

/**
 * @param {import('./iris-data.mjs').TrainedIris} trained
 * @returns {Uint8Array}
 */
function irisOnnx(trained) {
  const { w1, b1 } = foldScaler(trained);
  const { w2, b2 } = trained.net;
  const hidden = b1.length;
  const classes = b2.length;
  return encodeModel({
    name: 'iris',
    doc: 'Iris species from 4 flower measurements (cm); a 4-16-3 MLP trained in JS.',
    opset: 13,
    inputs: [valueInfo('features', 'float32', ['batch', 4])],
    outputs: [
      valueInfo('probabilities', 'float32', ['batch', classes]),
      valueInfo('label', 'int64', ['batch']),
    ],
    initializers: [
      initializer('W1', 'float32', [4, hidden], w1.flat()),
      initializer('B1', 'float32', [hidden], b1),
      initializer('W2', 'float32', [hidden, classes], w2.flat()),
      initializer('B2', 'float32', [classes], b2),
    ],
    nodes: [
      node('Gemm', ['features', 'W1', 'B1'], ['hidden_linear']),
      node('Relu', ['hidden_linear'], ['hidden']),
      node('Gemm', ['hidden', 'W2', 'B2'], ['logits']),
      node('Softmax', ['logits'], ['probabilities'], [intAttr('axis', 1)]),
      node('ArgMax', ['probabilities'], ['label'], [intAttr('axis', 1), intAttr('keepdims', 0)]),
    ],
  });
}

/**
 * The first held-out row of each species: real flowers the model did not see in training.
 * @param {import('./iris-data.mjs').TrainedIris} trained
 * @returns {number[][]}
 */
export function sampleRows(trained) {
  const { features, labels } = trained.holdout;
  return trained.classes.map((_, c) => features[labels.indexOf(c)]);
}

/**
 * @param {import('./iris-data.mjs').TrainedIris} trained
 * @returns {import('./example.mjs').ExampleModel}
 */
export function irisModel(trained) {
  const { train, holdout, classes } = trained;
  return {
    onnx: irisOnnx(trained),
    options: {
      name: 'iris',
      version: '1.0.0',
      description:
        `Iris species (${classes.join(', ')}) from sepal length, sepal width, petal length and petal width in cm ` +
        `(input features [batch, 4], float32). A 4-16-3 Relu MLP trained by gradient descent in JS on ` +
        `${train.labels.length} of the 150 flowers of Fisher's Iris data (UCI, CC BY 4.0), stratified; ` +
        `${holdout.labels.length} held out. Outputs class probabilities and the argmax label.`,
      license: 'Apache-2.0',
      policy: { kind: 'tolerance', abs: 1e-5, rel: 1e-4 },
      labels: { probabilities: classes, label: classes },
    },
    samples: { features: batchTensor('float32', sampleRows(trained)) },
    data: { 'holdout.json': holdout },
    summary: `4 -> 16 -> ${classes.length} float32 MLP, ${holdout.labels.length} held-out rows`,
  };
}
