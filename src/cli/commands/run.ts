import { Option, type Command } from 'commander';
import type { GraphOptimizationLevel, RuntimeProfile } from '../../protocol/runtime-profile.js';
import { defaultEngines } from '../../runtime/index.js';
import { parsePositiveInt } from '../args.js';
import { printFields, toJson } from '../io.js';
import { openStore, resolvePackage } from '../models.js';
import { commonOptions, globals } from '../options.js';
import type { Context } from '../program.js';
import {
  INPUT_HELP,
  classLine,
  describeTensor,
  inputTensors,
  readInputArgument,
  tensorsForPrint,
} from '../tensors.js';

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
      const engines = defaultEngines({
        onnx: {
          ...(flags.optimization === undefined ? {} : { graphOptimizationLevel: flags.optimization }),
          ...(flags.threads === undefined
            ? {}
            : { intraOpNumThreads: parsePositiveInt(flags.threads, '--threads') }),
          ...(flags.timeout === undefined
            ? {}
            : { limits: { timeoutMs: parsePositiveInt(flags.timeout, '--timeout') } }),
        },
      });
      try {
        const engine = engines.for(pkg, { trace: flags.trace });
        const result = await engine.run(pkg, inputs, { trace: flags.trace });
        if (json) {
          const outputs = tensorsForPrint(result.outputs);
          return ctx.io.out(toJson({ model: pkg.id, ...result, outputs, profile: engine.profile }));
        }
        printFields(ctx.io, [
          ['model', `${pkg.id} (${pkg.manifest.name} ${pkg.manifest.version})`],
          ...classLine(pkg.manifest.outputs, result.outputs),
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
        await engines.close();
      }
    });
}

function describeProfile(p: RuntimeProfile): string {
  return `${p.engine} ${p.engineVersion}, ${p.executionProvider}, optimisation ${p.graphOptimizationLevel}, ${p.arch}`;
}
