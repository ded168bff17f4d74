/**
 * A one-hidden-layer perceptron (inputs -> Relu hidden -> softmax over classes) trained by plain
 * full-batch gradient descent on the softmax cross-entropy, in float64. Weights are `[in][out]`
 * matrices, the layout ONNX Gemm and MatMul use with the batch on the left.
 */
import { seededRandom } from './random.mjs';

/** @typedef {{ w1: number[][], b1: number[], w2: number[][], b2: number[] }} Mlp */
/**
 * @typedef {object} TrainOptions
 * @property {number} hidden hidden units
 * @property {number} epochs full-batch gradient steps
 * @property {number} learningRate
 * @property {number} weightDecay L2 penalty on the weights (not the biases)
 * @property {number} seed for the initial weights
 */

/**
 * @param {number} rows
 * @param {number} cols
 * @param {() => number} sample
 * @returns {number[][]}
 */
function matrix(rows, cols, sample) {
  return Array.from({ length: rows }, () => Array.from({ length: cols }, sample));
}

/**
 * `x · w + b` for one row `x`.
 * @param {number[]} x
 * @param {number[][]} w
 * @param {number[]} b
 * @returns {number[]}
 */
function affine(x, w, b) {
  const out = [...b];
  for (let i = 0; i < x.length; i++) for (let j = 0; j < out.length; j++) out[j] += x[i] * w[i][j];
  return out;
}

/**
 * @param {number[]} logits
 * @returns {number[]}
 */
export function softmax(logits) {
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/**
 * @param {number[]} values
 * @returns {number} the index of the first largest value (ONNX ArgMax picks the first too)
 */
export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/**
 * @param {Mlp} net
 * @param {number[]} x
 * @returns {{ hidden: number[], logits: number[] }}
 */
export function forward(net, x) {
  const hidden = affine(x, net.w1, net.b1).map((v) => Math.max(0, v));
  return { hidden, logits: affine(hidden, net.w2, net.b2) };
}

/**
 * The gradient of the mean cross-entropy over the batch, plus the L2 penalty.
 * @param {Mlp} net
 * @param {number[][]} features
 * @param {number[]} labels
 * @param {number} weightDecay
 * @returns {Mlp}
 */
function gradient(net, features, labels, weightDecay) {
  const grad = {
    w1: net.w1.map((row) => row.map((w) => weightDecay * w)),
    b1: net.b1.map(() => 0),
    w2: net.w2.map((row) => row.map((w) => weightDecay * w)),
    b2: net.b2.map(() => 0),
  };
  const n = features.length;
  for (let r = 0; r < n; r++) {
    const x = features[r];
    const { hidden, logits } = forward(net, x);
    const dLogits = softmax(logits).map((p, k) => (p - (k === labels[r] ? 1 : 0)) / n);
    const dHidden = hidden.map((h, i) => (h > 0 ? dLogits.reduce((s, d, k) => s + d * net.w2[i][k], 0) : 0));
    for (let i = 0; i < hidden.length; i++)
      for (let k = 0; k < dLogits.length; k++) grad.w2[i][k] += hidden[i] * dLogits[k];
    for (let j = 0; j < x.length; j++)
      for (let i = 0; i < dHidden.length; i++) grad.w1[j][i] += x[j] * dHidden[i];
    dLogits.forEach((d, k) => (grad.b2[k] += d));
    dHidden.forEach((d, i) => (grad.b1[i] += d));
  }
  return grad;
}

/**
 * `a -= rate * g`, elementwise, in place.
 * @param {number[] | number[][]} a
 * @param {number[] | number[][]} g
 * @param {number} rate
 */
function descend(a, g, rate) {
  for (let i = 0; i < a.length; i++) {
    const ai = a[i];
    const gi = g[i];
    if (Array.isArray(ai) && Array.isArray(gi)) descend(ai, gi, rate);
    else /** @type {number[]} */ (a)[i] -= rate * /** @type {number} */ (gi);
  }
}

/**
 * Trains from He-normal initial weights and zero biases.
 * @param {number[][]} features standardised (zero mean, unit variance per column)
 * @param {number[]} labels class indices
 * @param {number} classes
 * @param {TrainOptions} options
 * @returns {Mlp}
 */
export function trainMlp(features, labels, classes, options) {
  const inputs = features[0].length;
  const random = seededRandom(options.seed);
  /** @type {Mlp} */
  const net = {
    w1: matrix(inputs, options.hidden, () => random.normal() * Math.sqrt(2 / inputs)),
    b1: new Array(options.hidden).fill(0),
    w2: matrix(options.hidden, classes, () => random.normal() * Math.sqrt(2 / options.hidden)),
    b2: new Array(classes).fill(0),
  };
  for (let epoch = 0; epoch < options.epochs; epoch++) {
    const grad = gradient(net, features, labels, options.weightDecay);
    for (const key of /** @type {const} */ (['w1', 'b1', 'w2', 'b2']))
      descend(net[key], grad[key], options.learningRate);
  }
  return net;
}
