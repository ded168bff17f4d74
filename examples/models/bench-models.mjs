/**
 * The benchmark models (`npm run bench`, bench/overhead.bench.ts): three float32 MLPs of about
 * 0.05 ms, 1 ms and 20 ms per run on a 2-core x64 machine, for measuring what the verified path
 * adds to a direct onnxruntime-node run. Seeded and deterministic like the example models; no
 * training (their outputs mean nothing).
 *
 *   x [1, 64] -> MatMul 64xH -> Tanh -> (MatMul HxH -> Add -> Tanh) x L -> MatMul Hx10 -> y [1, 10]
 *
 * The L hidden layers share one HxH weight, so that a model costing 20 ms is still a small file
 * (the cost is compute, not model loading or memory bandwidth). Inputs and outputs are the same
 * size for every model: the transport and hashing costs stay the same, only the compute grows.
 * Sizes were chosen by measuring direct runs (onnxruntime-node 1.30, graph optimisation `basic`,
 * 2 intra-op threads) on the benchmark machine; bench/results/overhead.json records the measured
 * direct run times of each run of the benchmark.
 *
 * `node examples/models/bench-models.mjs [outDir]` writes `<outDir>/<name>/` with model.onnx,
 * model.json and samples.json, like build.mjs does for the example models.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { encodeModel, initializer, intAttr, intsAttr, node, valueInfo } from './onnx-builder.mjs';
import { seededRandom } from './random.mjs';

/** Where the bench models go by default (git-ignored, next to the example models). */
export const BENCH_OUT_DIR = fileURLToPath(new URL('./build/bench/', import.meta.url));

const IN = 64;
const OUT = 10;

/**
 * @typedef {object} BenchModelSpec
 * @property {string} name
 * @property {number} hidden H
 * @property {number} layers L (shared HxH layers)
 * @property {number} targetMs the intended direct run time
 */

/** @type {readonly BenchModelSpec[]} */
export const BENCH_MODELS = [
  { name: 'bench-tiny', hidden: 256, layers: 8, targetMs: 0.05 },
  { name: 'bench-1ms', hidden: 512, layers: 100, targetMs: 1 },
  { name: 'bench-20ms', hidden: 1024, layers: 560, targetMs: 20 },
];

/**
 * @param {import('./random.mjs').Random} random
 * @param {number} count
 * @param {number} scale
 * @returns {number[]}
 */
function normal(random, count, scale) {
  return Array.from({ length: count }, () => random.normal() * scale);
}

/**
 * @param {BenchModelSpec} spec
 * @returns {Uint8Array}
 */
export function benchModelOnnx(spec) {
  const random = seededRandom(4242 + spec.hidden * 1000 + spec.layers);
  const h = spec.hidden;
  const nodes = [node('MatMul', ['x', 'W0'], ['m0']), node('Tanh', ['m0'], ['a0'])];
  for (let i = 1; i <= spec.layers; i++) {
    nodes.push(node('MatMul', [`a${i - 1}`, 'W'], [`m${i}`]));
    nodes.push(node('Add', [`m${i}`, 'b'], [`z${i}`]));
    nodes.push(node('Tanh', [`z${i}`], [`a${i}`]));
  }
  nodes.push(node('MatMul', [`a${spec.layers}`, 'Wout'], ['y']));
  return encodeModel({
    name: spec.name,
    doc: `Benchmark MLP: ${spec.layers} shared ${h}x${h} Tanh layers (seeded, untrained).`,
    opset: 13,
    inputs: [valueInfo('x', 'float32', [1, IN])],
    outputs: [valueInfo('y', 'float32', [1, OUT])],
    initializers: [
      initializer('W0', 'float32', [IN, h], normal(random, IN * h, 1 / Math.sqrt(IN))),
      // Slightly below 1/sqrt(H): activations neither vanish nor saturate over many layers.
      initializer('W', 'float32', [h, h], normal(random, h * h, 0.9 / Math.sqrt(h))),
      initializer('b', 'float32', [h], normal(random, h, 0.05)),
      initializer('Wout', 'float32', [h, OUT], normal(random, h * OUT, 1 / Math.sqrt(h))),
    ],
    nodes,
  });
}

/**
 * The large-tensor model (bench/large.bench.ts): x [1, n] float32 -> ReduceSumSquare over n ->
 * y [1, 1]. Its cost is moving and hashing the input: about a millisecond of compute for a
 * million values. `n` is symbolic, so one model serves every input size.
 */
export const LARGE_MODEL = { name: 'bench-large' };

/** @returns {Uint8Array} */
export function largeModelOnnx() {
  return encodeModel({
    name: LARGE_MODEL.name,
    doc: 'Benchmark model for large inputs: the sum of squares of x [1, n].',
    opset: 13,
    inputs: [valueInfo('x', 'float32', [1, 'n'])],
    outputs: [valueInfo('y', 'float32', [1, 1])],
    initializers: [],
    nodes: [node('ReduceSumSquare', ['x'], ['y'], [intsAttr('axes', [1]), intAttr('keepdims', 1)])],
  });
}

/**
 * A sample input: 64 values, multiples of 1/256 in [-1, 1), exact in JSON and float32.
 * @returns {number[]}
 */
export function benchSample() {
  const random = seededRandom(99);
  return Array.from({ length: IN }, () => Math.floor(random.next() * 512 - 256) / 256);
}

/**
 * @param {string} path
 * @param {Uint8Array | string} content
 */
function writeIfChanged(path, content) {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  if (existsSync(path) && Buffer.compare(readFileSync(path), bytes) === 0) return;
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, bytes);
  renameSync(temporary, path);
}

/**
 * Writes every bench model into `outDir/<name>/` (model.onnx, model.json, samples.json).
 * @param {string} [outDir]
 * @returns {{ spec: BenchModelSpec, dir: string }[]}
 */
export function buildBenchModels(outDir = BENCH_OUT_DIR) {
  return BENCH_MODELS.map((spec) => {
    const dir = join(outDir, spec.name);
    mkdirSync(dir, { recursive: true });
    writeIfChanged(join(dir, 'model.onnx'), benchModelOnnx(spec));
    const options = {
      name: spec.name,
      version: '1.0.0',
      description: `Benchmark MLP (about ${spec.targetMs} ms per run on 2 cores): x [1, ${IN}] -> ${spec.layers} shared ${spec.hidden}x${spec.hidden} Tanh layers -> y [1, ${OUT}]. Seeded, untrained.`,
      license: 'Apache-2.0',
      policy: { kind: 'tolerance', abs: 1e-5, rel: 1e-4 },
    };
    writeIfChanged(join(dir, 'model.json'), `${JSON.stringify(options, null, 2)}\n`);
    const samples = { x: { dtype: 'float32', shape: [1, IN], data: benchSample() } };
    writeIfChanged(join(dir, 'samples.json'), `${JSON.stringify(samples)}\n`);
    return { spec, dir };
  });
}

/**
 * Writes the large-tensor model into `outDir/bench-large/` (model.onnx, model.json; its inputs are
 * generated by the benchmark, at the size it measures).
 * @param {string} [outDir]
 * @returns {string} the folder
 */
export function buildLargeModel(outDir = BENCH_OUT_DIR) {
  const dir = join(outDir, LARGE_MODEL.name);
  mkdirSync(dir, { recursive: true });
  writeIfChanged(join(dir, 'model.onnx'), largeModelOnnx());
  const options = {
    name: LARGE_MODEL.name,
    version: '1.0.0',
    description: 'Benchmark model for large inputs: x [1, n] float32 -> sum of squares y [1, 1].',
    license: 'Apache-2.0',
    policy: { kind: 'tolerance', abs: 1e-3, rel: 1e-4 },
  };
  writeIfChanged(join(dir, 'model.json'), `${JSON.stringify(options, null, 2)}\n`);
  return dir;
}

const isMain =
  process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isMain) {
  for (const { dir } of buildBenchModels(process.argv[2] ?? BENCH_OUT_DIR)) console.log(dir);
  console.log(buildLargeModel(process.argv[2] ?? BENCH_OUT_DIR));
}
