import { Option, type Command } from 'commander';
import type { TensorSpec } from '../../protocol/manifest.js';
import type { GraphOptimizationLevel, RuntimeProfile } from '../../protocol/runtime-profile.js';
import type { Tensor } from '../../protocol/tensor.js';
import { createOnnxEngine } from '../../runtime/index.js';
import { parsePositiveInt } from '../args.js';
import { printFields, toJson } from '../io.js';
import { openStore, resolvePackage } from '../models.js';
import { commonOptions, globals } from '../options.js';
import type { Context } from '../program.js';
import { INPUT_HELP, describeTensor, inputTensors, readInputArgument, tensorsForPrint } from '../tensors.js';

type RunFlags = {
  input: string;
  trace: boolean;
  threads?: string;
  optimization?: GraphOptimizationLevel;
  timeout?: string;
};

export function registerRunCommand(program: Command, ctx: Context): void {
  commonOptions(program.command('run'))
    .description('run a model locally under a pinned runtime profile and print its outputs and hashes')
    .argument('<model>', 'a model id in the store, an .onnx file or a model folder')
    .requiredOption('--input <json|file>', INPUT_HELP)
    .option(
      '--trace',
      'also hash intermediate tensors (up to 8, evenly spaced) and print the trace root',
      false,
    )
    .option('--threads <n>', 'intra-op threads (does not change the output bits)')
    .addOption(
      new Option(
        '--optimization <level>',
        'graph optimisation level (part of the runtime profile; default basic)',
      ).choices(['disabled', 'basic', 'extended', 'all']),
    )
    .option('--timeout <ms>', 'per-run time limit in ms')
    .action(async (ref: string, flags: RunFlags, command: Command) => {
      const { json, store } = globals(command);
      const pkg = await resolvePackage(openStore(store), ref);
      const specs = pkg.manifest.inputs;
      const inputs = inputTensors(await readInputArgument(flags.input, async () => specs), specs);
      const engine = createOnnxEngine({
        ...(flags.optimization === undefined ? {} : { graphOptimizationLevel: flags.optimization }),
        ...(flags.threads === undefined
          ? {}
          : { intraOpNumThreads: parsePositiveInt(flags.threads, '--threads') }),
        ...(flags.timeout === undefined
          ? {}
          : { limits: { timeoutMs: parsePositiveInt(flags.timeout, '--timeout') } }),
      });
      try {
        const result = await engine.run(pkg, inputs, { trace: flags.trace });
        if (json) {
          const outputs = tensorsForPrint(result.outputs);
          return ctx.io.out(toJson({ model: pkg.id, ...result, outputs, profile: engine.profile }));
        }
        const classes = pkg.manifest.outputs.flatMap((spec) => {
          const t = result.outputs[spec.name];
          return spec.labels && t ? [['class', classify(spec, t).join(', ')] as [string, string]] : [];
        });
        printFields(ctx.io, [
          ['model', `${pkg.id} (${pkg.manifest.name} ${pkg.manifest.version})`],
          ...classes.slice(0, 1),
          ...Object.entries(result.outputs).map(([name, t]): [string, string] => [name, describeTensor(t)]),
          ['inputHash', result.inputHash],
          ['outputHash', result.outputHash],
          ['runtime', `${result.runtime} (${describeProfile(engine.profile)})`],
          ...(result.trace
            ? [['traceRoot', `${result.trace.root} (${result.trace.steps.length} steps)`] as [string, string]]
            : []),
          ['time', `${result.durationMs.toFixed(2)} ms`],
        ]);
      } finally {
        await engine.close();
      }
    });
}

/** Class names per row: an integer output indexes the labels; a float output's argmax does. */
function classify(spec: TensorSpec, t: Tensor): string[] {
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

function describeProfile(p: RuntimeProfile): string {
  return `${p.engine} ${p.engineVersion}, ${p.executionProvider}, optimisation ${p.graphOptimizationLevel}, ${p.arch}`;
}
