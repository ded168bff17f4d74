/**
 * What each model module gives build.mjs to write: the ONNX bytes, the pack options
 * (model.json), sample inputs (samples.json) and any extra data files. Model modules do no I/O.
 */

/**
 * @typedef {{ kind: 'exact' } | { kind: 'tolerance', abs: number, rel: number } | { kind: 'argmax', output: string }} Policy
 */
/**
 * The options `glassbox model pack` takes, as model.json.
 * @typedef {object} ModelOptions
 * @property {string} name
 * @property {string} version
 * @property {string} description
 * @property {string} license SPDX
 * @property {Policy} policy
 * @property {Record<string, string[]>} [labels] per output, the name of each class index
 */
/**
 * A tensor as JSON: flat row-major data; int64 as decimal strings.
 * @typedef {{ dtype: import('./onnx-builder.mjs').DType, shape: number[], data: (number | string)[] }} JsonTensor
 */
/**
 * @typedef {object} ExampleModel
 * @property {Uint8Array} onnx model.onnx
 * @property {ModelOptions} options model.json
 * @property {Record<string, JsonTensor>} samples samples.json: one input map, a few rows in the batch
 * @property {Record<string, unknown>} [data] more JSON files the tests need, by file name
 * @property {string} summary one line for the build log
 */

/**
 * @param {import('./onnx-builder.mjs').DType} dtype
 * @param {number[][]} rows the batch, one row per sample
 * @returns {JsonTensor}
 */
export function batchTensor(dtype, rows) {
  return { dtype, shape: [rows.length, rows[0].length], data: rows.flat() };
}
