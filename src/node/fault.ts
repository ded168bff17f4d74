import { hashTensors } from '../protocol/encoding.js';
import type { Tensor, TensorMap } from '../protocol/tensor.js';
import { traceOf, type Trace } from '../runtime/trace.js';

/*
 * The FAULT SWITCH (config `fault.perturb`), for tests of the network's defences only: a provider
 * that lies. It changes the first element of the first numeric output (in canonical name order):
 * +1e-3 for floats, +1 for integers and bools flip, before the outputs are hashed and signed, so the
 * receipt is a valid signature over a wrong answer: exactly what quorum and disputes must catch.
 * A traced answer gets a trace that agrees with the lie (the output's step re-hashed, when that
 * output is one of the trace's checkpoints), as a cheater would sign, so that bisection finds the
 * step that produced the wrong output; when it is not, the traces agree and the challenge is plain.
 */

export function perturbAnswer(
  outputs: TensorMap,
  trace: Trace | undefined,
): { outputs: TensorMap; trace?: Trace } {
  const perturbed = perturbOutputs(outputs);
  if (!trace) return { outputs: perturbed };
  const steps = trace.steps.map((step) =>
    perturbed[step.output] !== undefined && perturbed[step.output] !== outputs[step.output]
      ? { ...step, hash: hashTensors({ [step.output]: perturbed[step.output]! }) }
      : step,
  );
  return { outputs: perturbed, trace: traceOf(steps) };
}

function perturbOutputs(outputs: TensorMap): TensorMap {
  const names = Object.keys(outputs).sort();
  const name = names.find((n) => outputs[n]!.dtype !== 'string' && outputs[n]!.data.length > 0);
  if (name === undefined) return outputs;
  const t = outputs[name]!;
  return { ...outputs, [name]: perturbTensor(t) };
}

function perturbTensor(t: Tensor): Tensor {
  switch (t.dtype) {
    case 'string':
      return t;
    case 'float32':
    case 'float64': {
      const data = t.data.slice();
      data[0] = data[0]! + 1e-3;
      return { ...t, data } as Tensor;
    }
    case 'int64': {
      const data = t.data.slice();
      data[0] = data[0]! + 1n;
      return { ...t, data };
    }
    case 'bool': {
      const data = t.data.slice();
      data[0] = data[0] === 0 ? 1 : 0;
      return { ...t, data };
    }
    default: {
      const data = t.data.slice();
      data[0] = data[0]! + 1; // typed arrays wrap at the dtype's range: still a different value
      return { ...t, data } as Tensor;
    }
  }
}
