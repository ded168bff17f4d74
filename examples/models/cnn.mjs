/**
 * `cnn`: a small convolutional network over 28x28 grey images with seeded, UNTRAINED weights. Its
 * answers mean nothing; it exists to exercise convolution, pooling and a float pipeline deeper
 * than the Iris MLP (the kind of graph whose float results drift between engines).
 *
 *   image [batch,1,28,28] -> Conv 8x3x3 pad 1 -> Relu -> MaxPool 2 -> Conv 16x3x3 pad 1 -> Relu
 *   -> GlobalAveragePool -> Flatten -> Gemm 16->10 -> Softmax -> probabilities [batch,10]
 */
import { encodeModel, initializer, intAttr, intsAttr, node, valueInfo } from './onnx-builder.mjs';
import { seededRandom } from './random.mjs';

const SIDE = 28;
const CLASSES = 10;
const WEIGHT_SEED = 1234;
const IMAGE_SEED = 5678;

/**
 * He-normal values for a layer with `fanIn` inputs per output.
 * @param {import('./random.mjs').Random} random
 * @param {number} count
 * @param {number} fanIn
 * @returns {number[]}
 */
function heNormal(random, count, fanIn) {
  return Array.from({ length: count }, () => random.normal() * Math.sqrt(2 / fanIn));
}

/**
 * @returns {Uint8Array}
 */
function cnnOnnx() {
  const random = seededRandom(WEIGHT_SEED);
  const conv = intsAttr('pads', [1, 1, 1, 1]);
  return encodeModel({
    name: 'cnn',
    doc: 'A small CNN over 28x28 grey images with seeded, untrained weights (a test model).',
    opset: 13,
    inputs: [valueInfo('image', 'float32', ['batch', 1, SIDE, SIDE])],
    outputs: [valueInfo('probabilities', 'float32', ['batch', CLASSES])],
    initializers: [
      initializer('C1', 'float32', [8, 1, 3, 3], heNormal(random, 8 * 9, 9)),
      initializer(
        'C1b',
        'float32',
        [8],
        heNormal(random, 8, 9).map((v) => v * 0.1),
      ),
      initializer('C2', 'float32', [16, 8, 3, 3], heNormal(random, 16 * 8 * 9, 8 * 9)),
      initializer(
        'C2b',
        'float32',
        [16],
        heNormal(random, 16, 8 * 9).map((v) => v * 0.1),
      ),
      initializer('D', 'float32', [CLASSES, 16], heNormal(random, CLASSES * 16, 16)),
      initializer(
        'Db',
        'float32',
        [CLASSES],
        heNormal(random, CLASSES, 16).map((v) => v * 0.1),
      ),
    ],
    nodes: [
      node('Conv', ['image', 'C1', 'C1b'], ['conv1'], [intsAttr('kernel_shape', [3, 3]), conv]),
      node('Relu', ['conv1'], ['relu1']),
      node('MaxPool', ['relu1'], ['pool1'], [intsAttr('kernel_shape', [2, 2]), intsAttr('strides', [2, 2])]),
      node('Conv', ['pool1', 'C2', 'C2b'], ['conv2'], [intsAttr('kernel_shape', [3, 3]), conv]),
      node('Relu', ['conv2'], ['relu2']),
      node('GlobalAveragePool', ['relu2'], ['pooled']),
      node('Flatten', ['pooled'], ['flat'], [intAttr('axis', 1)]),
      node('Gemm', ['flat', 'D', 'Db'], ['logits'], [intAttr('transB', 1)]),
      node('Softmax', ['logits'], ['probabilities'], [intAttr('axis', 1)]),
    ],
  });
}

/**
 * A synthetic 28x28 image: a bright ring or a bar (two strokes a reader can recognise as "0" and
 * "1") plus seeded noise. Pixels are multiples of 1/256, so JSON and float32 carry them exactly.
 * @param {'ring' | 'bar'} shape
 * @param {import('./random.mjs').Random} random
 * @returns {number[]} row-major, SIDE * SIDE
 */
function syntheticImage(shape, random) {
  const pixels = [];
  const c = (SIDE - 1) / 2;
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const stroke =
        shape === 'ring'
          ? Math.abs(Math.hypot((x - c) / 7, (y - c) / 10) - 1) * 7
          : Math.abs(x - c) + Math.max(0, Math.abs(y - c) - 10);
      const ink = Math.max(0, 1 - stroke / 2);
      pixels.push(Math.min(255, Math.floor((0.9 * ink + 0.1 * random.next()) * 256)) / 256);
    }
  }
  return pixels;
}

/**
 * @returns {import('./example.mjs').ExampleModel}
 */
export function cnnModel() {
  const random = seededRandom(IMAGE_SEED);
  const images = [syntheticImage('ring', random), syntheticImage('bar', random)];
  return {
    onnx: cnnOnnx(),
    options: {
      name: 'cnn',
      version: '1.0.0',
      description:
        'A small CNN over 28x28 grey images (input image [batch, 1, 28, 28], float32, 0..1) with seeded, ' +
        'UNTRAINED weights: its probabilities mean nothing. Conv 8x3x3, Relu, MaxPool 2, Conv 16x3x3, Relu, ' +
        'GlobalAveragePool, Gemm 16->10, Softmax. A test model for float pipelines.',
      license: 'Apache-2.0',
      policy: { kind: 'tolerance', abs: 1e-5, rel: 1e-4 },
    },
    samples: { image: { dtype: 'float32', shape: [images.length, 1, SIDE, SIDE], data: images.flat() } },
    summary: `Conv-Relu-MaxPool-Conv-Relu-GAP-Gemm-Softmax, seeded untrained weights, ${images.length} synthetic images`,
  };
}
