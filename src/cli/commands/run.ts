import type { Command } from 'commander';
import type { ModelPackage } from '../../protocol/manifest.js';
import type { RuntimeProfile } from '../../protocol/runtime-profile.js';
import type { ChatMessage } from '../../runtime/engine.js';
import type { Engines } from '../../runtime/index.js';
import { printFields, toJson, usageError } from '../io.js';
import {
  enginesFor,
  generateLocally,
  printGeneration,
  samplingOptions,
  type RuntimeFlags,
  type SamplingFlags,
} from '../llm.js';
import { openStore, resolvePackage } from '../models.js';
import { commonOptions, globals, runtimeOptions } from '../options.js';
import type { Context } from '../program.js';
import {
  INPUT_HELP,
  classLine,
  describeTensor,
  inputTensors,
  readInputArgument,
  tensorsForPrint,
} from '../tensors.js';

type RunFlags = SamplingFlags &
  RuntimeFlags & {
    input?: string;
    prompt?: string;
    trace: boolean;
  };

export function registerRunCommand(program: Command, ctx: Context): void {
  const run = program.command('run');
  runtimeOptions(samplingOptions(commonOptions(run)))
    .description(
      'run a model locally under a pinned runtime profile and print its outputs and hashes (an LLM: generate from --prompt)',
    )
    .argument('<model>', 'a model id in the store, an .onnx file or a model folder')
    .option('--input <json|file>', INPUT_HELP)
    .option('--prompt <text>', 'an LLM: the user message (chat models) to answer')
    .option(
      '--trace',
      'also hash intermediate tensors (up to 8, evenly spaced) and print the trace root',
      false,
    )
    .action(async (ref: string, flags: RunFlags, command: Command) => {
      const { json, store } = globals(command);
      const pkg = await resolvePackage(openStore(store), ref);
      const engines = enginesFor(flags);
      try {
        if (pkg.manifest.format === 'llm') return await runLlm(ctx, engines, pkg, flags, json);
        if (flags.input === undefined)
          throw usageError(`model ${pkg.manifest.name} takes tensors: give them with --input`);
        const specs = pkg.manifest.inputs;
        const inputs = inputTensors(await readInputArgument(flags.input, async () => specs), specs);
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

/** An LLM: one chat turn from --prompt (a completion prompt when the model has no chat template). */
async function runLlm(ctx: Context, engines: Engines, pkg: ModelPackage, flags: RunFlags, json: boolean) {
  if (flags.prompt === undefined) throw usageError(`model ${pkg.manifest.name} is an LLM: give it --prompt`);
  const engine = engines.tokens(pkg);
  const chat = pkg.manifest.format === 'llm' && pkg.manifest.llm.chatTemplate !== undefined;
  const messages: ChatMessage[] = [
    ...(flags.system ? [{ role: 'system' as const, content: flags.system }] : []),
    { role: 'user', content: flags.prompt },
  ];
  const streamed = !json && ctx.io.write !== undefined;
  const g = await generateLocally(engine, pkg, chat ? messages : flags.prompt, flags, (text) =>
    streamed ? ctx.io.write!(text) : undefined,
  );
  if (streamed) ctx.io.write!('\n');
  else if (!json) ctx.io.out(g.text);
  printGeneration(ctx.io, json, engine, g);
}

function describeProfile(p: RuntimeProfile): string {
  return `${p.engine} ${p.engineVersion}, ${p.executionProvider}, optimisation ${p.graphOptimizationLevel}, ${p.arch}`;
}
