import { readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { decodeTensors, encodeTensors, tensorsFromJson, tensorToJson } from '../protocol/encoding.js';
import { inputsFromJson } from '../protocol/inputs.js';
import type { TensorSpec } from '../protocol/manifest.js';
import { signedReceiptFromJson, signedReceiptToJson, type SignedReceipt } from '../protocol/receipt.js';
import {
  DTYPE_BYTES,
  dataFromBytes,
  elementCount,
  type DType,
  type Tensor,
  type TensorMap,
} from '../protocol/tensor.js';
import { readJsonArgument } from './args.js';
import { usageError } from './io.js';

/*
 * Tensors on the command line: reading `--input` (JSON, the canonical encoding, or a NumPy .npy
 * file), printing outputs without pouring a million numbers onto the terminal, and the files of
 * `infer --save` that `verify` reads back.
 */

/** What `--input` gave: tensors (from a binary file), or JSON for the model's schema to type. */
export type InputArgument = { readonly tensors: TensorMap } | { readonly json: unknown };

export const INPUT_HELP =
  'inputs: JSON {"name": nested arrays | {dtype, shape, data}}, inline or a .json file; a .bin file of their canonical encoding (as `infer --save` writes); or a .npy array for a one-input model';

/**
 * `--input`: inline JSON or a .json file ({"name": nested arrays | {dtype, shape, data}}); a .bin
 * file holding the canonical encoding of all the inputs (what `infer --save` writes); or a .npy
 * file holding the one input of a one-input model (`specs` gives its name). The binary forms never
 * go through JSON numbers.
 */
export async function readInputArgument(
  value: string,
  specs: () => Promise<readonly TensorSpec[]>,
): Promise<InputArgument> {
  const lower = value.toLowerCase();
  if (lower.endsWith('.bin')) return { tensors: decodeTensors(await readBytes(value, '--input')) };
  if (lower.endsWith('.npy')) {
    const bytes = await readBytes(value, '--input');
    const inputs = await specs();
    if (inputs.length !== 1)
      throw usageError(
        `--input ${value}: a .npy file holds one array, but the model takes ${inputs.length} inputs (${inputs.map((s) => s.name).join(', ')}); give a .bin or JSON file`,
      );
    return { tensors: { [inputs[0]!.name]: parseNpy(bytes, value) } };
  }
  return { json: await readJsonArgument(value, '--input') };
}

/** The inputs as tensors, typed by the model's schema when they came as JSON. */
export function inputTensors(input: InputArgument, specs: readonly TensorSpec[]): TensorMap {
  return 'tensors' in input ? input.tensors : inputsFromJson(specs, input.json);
}

async function readBytes(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (cause) {
    throw usageError(`${what} ${path} is not a readable file`, cause);
  }
}

/** NumPy's little-endian (or byte-sized) element types, by their `descr`. */
const NPY_DTYPES: Readonly<Record<string, Exclude<DType, 'string'>>> = {
  '<f4': 'float32',
  '<f8': 'float64',
  '|i1': 'int8',
  '|u1': 'uint8',
  '<i2': 'int16',
  '<i4': 'int32',
  '<i8': 'int64',
  '|b1': 'bool',
};

/** One C-order array of an .npy file (format versions 1 to 3: https://numpy.org/neps/nep-0001-npy-format.html). */
export function parseNpy(bytes: Uint8Array, path: string): Tensor {
  const bad = (why: string) => usageError(`${path} is not an .npy array Glassbox reads: ${why}`);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw bad('no NumPy magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6]!;
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + headerLength));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const dtype = descr === undefined ? undefined : NPY_DTYPES[descr];
  if (!dtype)
    throw bad(
      `element type ${descr ?? '?'} (supported: ${Object.entries(NPY_DTYPES)
        .map(([d, t]) => `${d} ${t}`)
        .join(', ')})`,
    );
  if (!/'fortran_order':\s*False/.test(header)) throw bad('Fortran order (save a C-order array)');
  const dims = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (dims === undefined) throw bad('no shape in its header');
  const shape = dims
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
    .map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw bad(`shape (${dims})`);
  const data = bytes.subarray(start + headerLength);
  const size = DTYPE_BYTES[dtype];
  if (data.byteLength !== elementCount(shape) * size)
    throw bad(
      `its data is ${data.byteLength} bytes, but shape (${dims}) of ${descr} takes ${elementCount(shape) * size}`,
    );
  return { dtype, shape, data: dataFromBytes(dtype, data) } as Tensor;
}

/** Values of a tensor shown to people, and the most a `--json` tensor carries in full. */
const SHOWN_VALUES = 12;
export const PRINT_MAX_VALUES = 4096;

/** `float32[1,10] [0.1, …] … (10 values)`: the first values only, converted alone. */
export function describeTensor(t: Tensor): string {
  const count = t.data.length;
  const head = tensorToJson({
    ...t,
    shape: [Math.min(count, SHOWN_VALUES)],
    data: t.data.slice(0, SHOWN_VALUES),
  } as Tensor).data;
  const shown = head.map((v) => (typeof v === 'number' ? Number(v.toPrecision(6)) : v));
  return `${t.dtype}[${t.shape.join(',')}] ${JSON.stringify(shown)}${count > SHOWN_VALUES ? ` … (${count} values)` : ''}`;
}

/**
 * A tensor for `--json` output: in full up to PRINT_MAX_VALUES values, else its dtype, shape, value
 * count and first values (the whole of it is in the files `--save` writes).
 */
export function tensorForPrint(t: Tensor): unknown {
  if (t.data.length <= PRINT_MAX_VALUES) return tensorToJson(t);
  const head = tensorToJson({
    ...t,
    shape: [SHOWN_VALUES],
    data: t.data.slice(0, SHOWN_VALUES),
  } as Tensor).data;
  return { dtype: t.dtype, shape: [...t.shape], values: t.data.length, first: head, truncated: true };
}

export function tensorsForPrint(tensors: TensorMap): Record<string, unknown> {
  return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, tensorForPrint(t)]));
}

export const SAVE_HELP =
  'write the answer for `glassbox verify`: x.json (model and receipts) with x.inputs.bin and x.outputs.bin beside it (the canonical encodings of inputs and outputs)';

/*
 * `infer --save x.json` writes three files: x.json ({model, receipts, inputsFile, outputsFile},
 * receipts as JSON) and, named in it relative to it, x.inputs.bin and x.outputs.bin, the canonical
 * encodings of the inputs and outputs (their keccak256 are the receipts' inputHash and outputHash).
 * `verify` reads that form, and the older single JSON file with `inputs` and `outputs` as JSON
 * tensors.
 */

export type SavedAnswer = {
  readonly model: string;
  readonly receipts: readonly SignedReceipt[];
  readonly inputs: TensorMap;
  readonly outputs: TensorMap;
};

/** The paths `saveAnswer` writes for `path`. */
export function savedPaths(path: string): { json: string; inputs: string; outputs: string } {
  const stem = path.replace(/\.json$/i, '');
  return { json: path, inputs: `${stem}.inputs.bin`, outputs: `${stem}.outputs.bin` };
}

export async function saveAnswer(path: string, answer: SavedAnswer): Promise<void> {
  const paths = savedPaths(path);
  // the tensors first: the JSON names them, so it is written once they are there
  await writeFile(paths.inputs, encodeTensors(answer.inputs));
  await writeFile(paths.outputs, encodeTensors(answer.outputs));
  const json = {
    model: answer.model,
    receipts: answer.receipts.map(signedReceiptToJson),
    inputsFile: basename(paths.inputs),
    outputsFile: basename(paths.outputs),
  };
  await writeFile(path, JSON.stringify(json, null, 2) + '\n');
}

/** What `verify` checks: the receipts, with the inputs and outputs saved beside them when there are. */
export type ReadSaved = {
  readonly receipts: SignedReceipt[];
  readonly inputs?: TensorMap;
  readonly outputs?: TensorMap;
};

/** A file `infer --save` wrote (either form), or one signed receipt as JSON. */
export async function readSaved(path: string): Promise<ReadSaved> {
  let saved: {
    receipts?: unknown[];
    inputs?: unknown;
    outputs?: unknown;
    inputsFile?: unknown;
    outputsFile?: unknown;
  };
  const text = new TextDecoder().decode(await readBytes(path, 'the file'));
  try {
    saved = JSON.parse(text) as typeof saved;
  } catch (cause) {
    throw usageError(`${path} is not JSON: ${(cause as Error).message}`, cause);
  }
  const receipts = (saved.receipts ?? [saved]).map((r) => signedReceiptFromJson(r));
  if (receipts.length === 0) throw usageError(`${path} holds no receipt`);
  const tensors = async (file: unknown, json: unknown, field: 'inputs' | 'outputs') => {
    if (typeof file === 'string') {
      const beside = join(dirname(path), file);
      return decodeTensors(await readBytes(beside, `${path} names ${field} file`));
    }
    return json === undefined ? undefined : tensorsFromJson(json, field);
  };
  const inputs = await tensors(saved.inputsFile, saved.inputs, 'inputs');
  const outputs = await tensors(saved.outputsFile, saved.outputs, 'outputs');
  return { receipts, ...(inputs ? { inputs } : {}), ...(outputs ? { outputs } : {}) };
}
/** Class names per row: an integer output indexes the labels; a float output's argmax does. */
export function classify(spec: TensorSpec, t: Tensor): string[] {
  const labels = spec.labels ?? [];
  if (t.dtype === 'string' || t.dtype === 'bool') return [];
  if (t.dtype !== 'float32' && t.dtype !== 'float64')
    return Array.from(t.data as ArrayLike<number | bigint>, (v) => labels[Number(v)] ?? `#${v}`);
  const width = t.shape[t.shape.length - 1] ?? 1;
  const names: string[] = [];
  for (let row = 0; row * width < t.data.length; row++) {
    let best = 0;
    for (let i = 1; i < width; i++) if (t.data[row * width + i]! > t.data[row * width + best]!) best = i;
    names.push(labels[best] ?? `#${best}`);
  }
  return names;
}

/** The `class` line for the first output that has labels, as `run` and `infer` print it. */
export function classLine(specs: readonly TensorSpec[], outputs: TensorMap): [string, string][] {
  for (const spec of specs) {
    const t = outputs[spec.name];
    if (spec.labels && t) return [['class', classify(spec, t).join(', ')]];
  }
  return [];
}
