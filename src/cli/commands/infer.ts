import type { Command } from 'commander';
import { signedReceiptToJson } from '../../protocol/receipt.js';
import {
  closeClient,
  discoverProviders,
  getManifest,
  infer,
  type InferMode,
  type VerificationReport,
} from '../../sdk/index.js';
import { parsePositiveInt } from '../args.js';
import { connectionOptions, openClient, resolveConnection, type ConnectionFlags } from '../connection.js';
import { printFields, toJson, usageError } from '../io.js';
import { jsonOption } from '../options.js';
import type { Context } from '../program.js';
import {
  INPUT_HELP,
  SAVE_HELP,
  classLine,
  describeTensor,
  inputTensors,
  readInputArgument,
  saveAnswer,
  tensorsForPrint,
} from '../tensors.js';

type InferFlags = ConnectionFlags & {
  input: string;
  quorum?: string;
  local: boolean;
  maxPrice: string;
  timeout?: string;
  trace: boolean;
  save?: string;
  json: boolean;
};

export function registerInferCommand(program: Command, ctx: Context): void {
  connectionOptions(jsonOption(program.command('infer')))
    .description(
      'run a model on the network: pick providers from the chain, verify every receipt, pay by voucher',
    )
    .argument('<model>', 'the model id')
    .requiredOption('--input <json|file>', INPUT_HELP)
    .option('--quorum <k>', "ask k distinct providers and take the majority under the model's policy")
    .option('--local', 'also re-execute locally and compare (small models)', false)
    .option('--max-price <amount>', 'the most to pay per answer, in token base units', '1000000000000000000')
    .option('--timeout <ms>', 'give up after this long')
    .option('--trace', "ask for the execution trace's root in the receipt", false)
    .option('--save <file.json>', SAVE_HELP)
    .action(async (model: string, flags: InferFlags) => {
      if (flags.quorum !== undefined && flags.local) throw usageError('--quorum and --local are exclusive');
      if (!/^\d+$/.test(flags.maxPrice))
        throw usageError(`--max-price ${flags.maxPrice} is not an amount of base units`);
      const mode: InferMode = flags.local
        ? 'local'
        : flags.quorum !== undefined
          ? { quorum: parsePositiveInt(flags.quorum, '--quorum') }
          : 'receipt';
      const client = await openClient(await resolveConnection(flags));
      try {
        const input = await readInputArgument(flags.input, async () => {
          const providers = await discoverProviders(client, { model });
          return (await getManifest(client, model, providers)).inputs;
        });
        const result = await infer(client, {
          model,
          inputs: 'tensors' in input ? input.tensors : (input.json as Record<string, unknown>),
          mode,
          maxPrice: BigInt(flags.maxPrice),
          trace: flags.trace,
          ...(flags.timeout === undefined ? {} : { timeoutMs: parsePositiveInt(flags.timeout, '--timeout') }),
        });
        const manifest = await getManifest(client, model, []); // cached by infer
        if (flags.save)
          await saveAnswer(flags.save, {
            model,
            // the inputs as sent, so that `glassbox verify` can recompute inputHash
            inputs: inputTensors(input, manifest.inputs),
            outputs: result.outputs,
            receipts: result.receipts,
          });
        if (flags.json)
          return ctx.io.out(
            toJson({
              model,
              outputs: tensorsForPrint(result.outputs),
              receipts: result.receipts.map(signedReceiptToJson),
              providers: result.providers,
              report: result.report,
              evidence: result.evidence,
            }),
          );
        printFields(ctx.io, [
          ['model', `${model} (${manifest.name} ${manifest.version})`],
          ['mode', describeMode(mode, result.report)],
          ...classLine(manifest.outputs, result.outputs),
          ...Object.entries(result.outputs).map(([name, t]): [string, string] => [name, describeTensor(t)]),
        ]);
        printReport(ctx, result.report);
        if (result.evidence)
          ctx.io.out(
            `evidence: ${result.evidence.disagreements.length} disagreement(s), ${result.evidence.equivocations.length} equivocation(s) — providers that answered differently`,
          );
        if (flags.save)
          ctx.io.out(`saved to ${flags.save}; check it again with: glassbox verify ${flags.save}`);
      } finally {
        await closeClient(client);
      }
    });
}

function describeMode(mode: InferMode, report: VerificationReport): string {
  if (typeof mode === 'string') return mode;
  const q = report.quorum;
  if (!q) return `quorum ${mode.quorum}`;
  const missing = q.answered < q.k ? `, ${q.k - q.answered} did not answer` : '';
  return `quorum ${q.k}: ${q.majority} of ${q.k} agree${missing}`;
}

export function printReport(ctx: Context, report: VerificationReport): void {
  for (const r of report.receipts) {
    ctx.io.out(
      `receipt from ${r.provider}: ${r.ok ? 'verified' : 'FAILED'} (price ${r.receipt.receipt.price}, request ${r.requestId.slice(0, 10)}…)`,
    );
    for (const c of r.checks) ctx.io.out(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.check.padEnd(10)} ${c.detail}`);
  }
  for (const r of report.rejected) ctx.io.out(`not used: ${r.provider} ${r.code}: ${r.message}`);
}
