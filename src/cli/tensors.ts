import { tensorToJson } from '../protocol/encoding.js';
import type { TensorSpec } from '../protocol/manifest.js';
import type { Tensor, TensorMap } from '../protocol/tensor.js';

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

const SHOWN = 12;

/** dtype, shape and the first values: a summary, never a million numbers. */
export function describeTensor(t: Tensor): string {
  const head = { ...t, shape: [Math.min(SHOWN, t.data.length)], data: t.data.slice(0, SHOWN) } as Tensor;
  const shown = tensorToJson(head).data.map((v) => (typeof v === 'number' ? Number(v.toPrecision(6)) : v));
  const more = t.data.length > SHOWN ? ` … (${t.data.length} values)` : '';
  return `${t.dtype}[${t.shape.join(',')}] ${JSON.stringify(shown)}${more}`;
}
