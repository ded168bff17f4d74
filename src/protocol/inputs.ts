import { MAX_RANK, tensorFromElements, tensorFromJson } from './encoding.js';
import { GlassboxError } from './errors.js';
import type { TensorSpec } from './manifest.js';
import { assertTensor, dataByteLength, type Tensor, type TensorMap } from './tensor.js';

/*
 * Inputs checked against a model's schema (its manifest's `inputs`), before anything runs. Every
 * error names the offending field as a path: `inputs.features.shape[1]`.
 */

export type InputLimits = { readonly maxInputBytes?: number };

/**
 * Refuses inputs that do not fit the schema: an unknown name (INPUT_UNKNOWN), a missing one
 * (INPUT_MISSING), a malformed tensor (TENSOR_INVALID), a wrong dtype (INPUT_DTYPE), rank
 * (INPUT_RANK) or fixed dim (INPUT_DIM), a symbolic dim bound to two sizes (INPUT_DIM: the same
 * name must take the same size in every input; `?` is free), or more data than the limit
 * (INPUT_TOO_LARGE, counting all inputs together).
 */
export function checkInputs(specs: readonly TensorSpec[], inputs: TensorMap, limits: InputLimits = {}): void {
  const declared = new Map(specs.map((s) => [s.name, s]));
  for (const name of Object.keys(inputs)) {
    if (!declared.has(name))
      throw new GlassboxError(
        'INPUT_UNKNOWN',
        `inputs.${name} is not an input of this model (it takes ${[...declared.keys()].join(', ')})`,
        {
          field: `inputs.${name}`,
        },
      );
  }
  const bound = new Map<string, { size: number; at: string }>();
  let total = 0;
  for (const spec of specs) {
    const field = `inputs.${spec.name}`;
    const value = Object.hasOwn(inputs, spec.name) ? inputs[spec.name] : undefined;
    if (value === undefined) throw new GlassboxError('INPUT_MISSING', `${field} is missing`, { field });
    assertTensor(value, field);
    if (value.dtype !== spec.dtype)
      throw new GlassboxError(
        'INPUT_DTYPE',
        `${field} is ${value.dtype}, but the model takes ${spec.dtype}`,
        { field: `${field}.dtype` },
      );
    if (value.shape.length !== spec.shape.length)
      throw new GlassboxError(
        'INPUT_RANK',
        `${field} has rank ${value.shape.length} [${value.shape.join(', ')}], but the model takes rank ${spec.shape.length} [${spec.shape.join(', ')}]`,
        { field: `${field}.shape` },
      );
    spec.shape.forEach((dim, i) => {
      const size = value.shape[i]!;
      const at = `${field}.shape[${i}]`;
      if (typeof dim === 'number') {
        if (size !== dim)
          throw new GlassboxError('INPUT_DIM', `${at} is ${size}, but the model takes ${dim}`, { field: at });
      } else if (dim !== '?') {
        // A named symbolic dim must take one size across all inputs (the batch of `x` and of `mask`).
        const seen = bound.get(dim);
        if (seen && seen.size !== size)
          throw new GlassboxError(
            'INPUT_DIM',
            `${at} is ${size}, but "${dim}" is ${seen.size} at ${seen.at}`,
            { field: at },
          );
        bound.set(dim, { size, at });
      }
    });
    total += dataByteLength(value);
    if (limits.maxInputBytes !== undefined && total > limits.maxInputBytes)
      throw new GlassboxError(
        'INPUT_TOO_LARGE',
        `inputs exceed the limit of ${limits.maxInputBytes} bytes (at ${field})`,
        {
          field,
          details: { limit: limits.maxInputBytes },
        },
      );
  }
}

/**
 * Inputs from JSON: per name, either a full tensor `{dtype, shape, data}` or plain nested arrays,
 * whose dtype comes from the schema and whose shape from the nesting.
 */
export function inputsFromJson(specs: readonly TensorSpec[], json: unknown): Record<string, Tensor> {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new GlassboxError('TENSOR_DECODE', 'inputs must be a JSON object of named tensors', {
      field: 'inputs',
    });
  const declared = new Map(specs.map((s) => [s.name, s]));
  const out: Record<string, Tensor> = Object.create(null);
  for (const [name, value] of Object.entries(json)) {
    const field = `inputs.${name}`;
    const spec = declared.get(name);
    if (!spec)
      throw new GlassboxError(
        'INPUT_UNKNOWN',
        `${field} is not an input of this model (it takes ${[...declared.keys()].join(', ')})`,
        { field },
      );
    if (Array.isArray(value) || typeof value !== 'object' || value === null) {
      const { shape, elements } = flattenNested(value, field);
      out[name] = tensorFromElements(spec.dtype, shape, elements, field);
    } else {
      out[name] = tensorFromJson(value, field);
    }
  }
  return out;
}

/** Shape and row-major elements of nested arrays; a scalar is rank 0. Ragged arrays are refused. */
function flattenNested(value: unknown, field: string): { shape: number[]; elements: unknown[] } {
  const shape: number[] = [];
  for (let level: unknown = value; Array.isArray(level); level = level[0]) {
    shape.push(level.length);
    if (shape.length > MAX_RANK)
      throw new GlassboxError('INPUT_RANK', `${field} is nested deeper than ${MAX_RANK} levels`, { field });
  }
  const elements: unknown[] = [];
  const walk = (node: unknown, depth: number, path: string) => {
    if (depth === shape.length) {
      if (Array.isArray(node))
        throw new GlassboxError('INPUT_RANK', `${path} is nested deeper than its siblings`, { field: path });
      elements.push(node);
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[depth])
      throw new GlassboxError(
        'INPUT_DIM',
        `${path} has ${Array.isArray(node) ? node.length : 'no'} elements where its siblings have ${shape[depth]} (ragged array)`,
        { field: path },
      );
    node.forEach((child, i) => walk(child, depth + 1, `${path}[${i}]`));
  };
  walk(value, 0, field);
  return { shape, elements };
}
