/**
 * A float model nobody has seen before: an 8-16-4 MLP (Gemm, Relu, Gemm, Softmax) with random
 * weights, for trying `glassbox model push --serve` without an ONNX file of your own.
 *
 *   node examples/models/random-model.mjs my-model.onnx [seed]
 *
 * Input `x`: float32 [batch, 8]; output `probabilities`: float32 [batch, 4]. Without a seed the
 * weights differ on every run (and so does the model id).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encodeModel, initializer, intAttr, node, valueInfo } from './onnx-builder.mjs';
import { seededRandom } from './random.mjs';

/**
 * The ONNX bytes of an 8-16-4 MLP with N(0, 1/fan_in) weights drawn from `seed`.
 * @param {number} seed any 32-bit integer
 * @returns {Uint8Array}
 */
export function randomMlpOnnx(seed) {
  const random = seededRandom(seed);
  /** @param {number} count @param {number} fanIn */
  const weights = (count, fanIn) => Array.from({ length: count }, () => random.normal() / Math.sqrt(fanIn));
  return encodeModel({
    name: 'random-mlp',
    doc: `An 8-16-4 MLP with random weights (seed ${seed}).`,
    opset: 13,
    inputs: [valueInfo('x', 'float32', ['batch', 8])],
    outputs: [valueInfo('probabilities', 'float32', ['batch', 4])],
    initializers: [
      initializer('W1', 'float32', [8, 16], weights(8 * 16, 8)),
      initializer('B1', 'float32', [16], weights(16, 8)),
      initializer('W2', 'float32', [16, 4], weights(16 * 4, 16)),
      initializer('B2', 'float32', [4], weights(4, 16)),
    ],
    nodes: [
      node('Gemm', ['x', 'W1', 'B1'], ['hidden_linear']),
      node('Relu', ['hidden_linear'], ['hidden']),
      node('Gemm', ['hidden', 'W2', 'B2'], ['logits']),
      node('Softmax', ['logits'], ['probabilities'], [intAttr('axis', 1)]),
    ],
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [out, seedArg] = process.argv.slice(2);
  if (!out) {
    console.error('usage: node examples/models/random-model.mjs <out.onnx> [seed]');
    process.exit(1);
  }
  const seed = seedArg === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(seedArg);
  writeFileSync(out, randomMlpOnnx(seed));
  console.log(`wrote ${out}: an 8-16-4 float MLP, seed ${seed}; input x float32[batch,8]`);
}
