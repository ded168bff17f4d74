import ort from 'onnxruntime-node';
import { GlassboxError } from '../../protocol/errors.js';
import { isDType, type Tensor } from '../../protocol/tensor.js';

/** Our tensor as onnxruntime's; the data is shared, not copied. */
export function toOrt(value: Tensor): ort.Tensor {
  return new ort.Tensor(value.dtype, value.data as never, [...value.shape]);
}

/** onnxruntime's tensor as ours, copied out of the runtime's buffers. */
export function fromOrt(value: ort.Tensor, name: string): Tensor {
  const dtype = value.type;
  if (!isDType(dtype))
    throw new GlassboxError(
      'RUN_FAILED',
      `output ${name} has dtype ${dtype}, which Glassbox tensors cannot carry`,
      { field: name },
    );
  const shape = value.dims.map(Number);
  const data =
    dtype === 'string'
      ? [...(value.data as string[])]
      : (value.data as Exclude<Tensor['data'], string[]>).slice();
  return { dtype, shape, data } as Tensor;
}
