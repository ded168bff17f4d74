import type { Command } from 'commander';
import { parsePolicy } from '../args.js';
import { printFields, toJson } from '../io.js';
import { commonOptions, globals } from '../options.js';
import type { Context } from '../program.js';
import { DEFAULT_TOLERANCE } from '../../protocol/policy.js';
import type { PackModelFileParameters } from '../../store/index.js';
import { describeDims, openStore, packFromPath, resolveManifest } from '../models.js';

export function registerModelCommands(program: Command, ctx: Context): Command {
  const model = program
    .command('model')
    .description('pack, inspect and publish content-addressed model packages');

  packOptions(commonOptions(model.command('pack')))
    .description(
      'store an .onnx file, a folder with model.onnx and model.json, or an LLM folder in the Hugging Face ONNX layout (config.json, tokenizer files, onnx/model.onnx) as a model package',
    )
    .argument(
      '<path>',
      'an .onnx file, a folder holding model.onnx and its pack options in model.json, or an LLM folder (config.json and onnx/model.onnx, pack options in model.json)',
    )
    .action(async (path: string, options: PackFlags, command: Command) => {
      const { json, store } = globals(command);
      const packed = await packFromPath(openStore(store), path, packParameters(options));
      if (json) return ctx.io.out(toJson(packed));
      ctx.io.out(packed.id);
      ctx.io.out(JSON.stringify(packed.manifest, null, 2));
    });

  commonOptions(model.command('inspect'))
    .description("show a model's schema, policy and files")
    .argument('<model>', 'a model id in the store, an .onnx file or a model folder')
    .action(async (ref: string, _options: unknown, command: Command) => {
      const { json, store } = globals(command);
      const { id, manifest } = await resolveManifest(openStore(store), ref);
      if (json) return ctx.io.out(toJson({ id, manifest }));
      printFields(ctx.io, [
        ['id', id],
        ['name', `${manifest.name} ${manifest.version}`],
        ['format', manifest.format],
        ['policy', JSON.stringify(manifest.policy)],
        ['license', manifest.license || '(none)'],
        ...manifest.inputs.map((t): [string, string] => [
          `input ${t.name}`,
          `${t.dtype}[${describeDims(t.shape)}]`,
        ]),
        ...manifest.outputs.map((t): [string, string] => [
          `output ${t.name}`,
          `${t.dtype}[${describeDims(t.shape)}]${t.labels ? ` labels ${t.labels.join(', ')}` : ''}`,
        ]),
        ...manifest.files.map((f): [string, string] => [`file ${f.path}`, `${f.cid} (${f.size} bytes)`]),
      ]);
      if (manifest.description) ctx.io.out(`\n${manifest.description}`);
    });
  return model;
}

export type PackFlags = {
  name?: string;
  version?: string;
  policy?: string;
  description?: string;
  license?: string;
};

/** The flags that shape a package: `model pack` and `model push` take the same. */
export function packOptions(command: Command): Command {
  return command
    .option('--name <name>', 'model name (default: the file name)')
    .option('--version <version>', 'model version (default: 1)')
    .option(
      '--policy <policy>',
      `comparison policy: exact | tolerance[:ABS[:REL]] | argmax:OUTPUT (default: tolerance:${DEFAULT_TOLERANCE.abs}:${DEFAULT_TOLERANCE.rel} when an output is float, else exact)`,
    )
    .option('--description <text>', 'what the model does')
    .option('--license <spdx>', 'the license of the weights');
}

/** The pack parameters the flags name (only those given: a folder's model.json fills the rest). */
export function packParameters(flags: PackFlags): PackModelFileParameters {
  return {
    ...(flags.name === undefined ? {} : { name: flags.name }),
    ...(flags.version === undefined ? {} : { version: flags.version }),
    ...(flags.policy === undefined ? {} : { policy: parsePolicy(flags.policy) }),
    ...(flags.description === undefined ? {} : { description: flags.description }),
    ...(flags.license === undefined ? {} : { license: flags.license }),
  };
}
