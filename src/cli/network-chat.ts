import { Option, type Command } from 'commander';
import type { GenerationResult, LlmMode, TokenPriceCap } from '../sdk/index.js';
import { signedReceiptToJson } from '../protocol/receipt.js';
import { parseAmount, parsePositiveInt } from './args.js';
import { formatAmount, printFields, toJson, usageError, type Io } from './io.js';

/*
 * What `glassbox gateway` and `glassbox chat` over the network share: how a generation is routed
 * and checked (--quorum, --recheck local, --max-price-per-million, --hedge-after), and how a
 * verified generation's receipts and checks are printed.
 */

export type NetworkChatFlags = {
  quorum?: string;
  recheck?: 'local';
  maxPricePerMillion?: string;
  hedgeAfter?: string;
};

export function networkChatOptions(command: Command): Command {
  return command
    .option('--quorum <k>', 'ask k providers per (non-stream) request and answer the majority')
    .addOption(
      new Option('--recheck <where>', 're-check every generation by teacher forcing here').choices(['local']),
    )
    .option(
      '--max-price-per-million <input,output>',
      'route around providers priced above this (base units per million prompt and output tokens)',
    )
    .option('--hedge-after <ms>', 'no first token by then: a second provider races (default: from health)');
}

/** No cap: the largest uint256, so every offer is under it. */
const NO_CAP = 2n ** 256n - 1n;

/** `<input>,<output>`: base units per million tokens, prompt and generated. */
export function parsePriceCap(value: string | undefined): TokenPriceCap {
  if (value === undefined) return { input: NO_CAP, output: NO_CAP };
  const parts = value.split(',');
  if (parts.length !== 2)
    throw usageError(
      `--max-price-per-million ${value} is not <input>,<output> (base units per million tokens)`,
    );
  return {
    input: parseAmount(parts[0]!.trim(), '--max-price-per-million (input)'),
    output: parseAmount(parts[1]!.trim(), '--max-price-per-million (output)'),
  };
}

export const capText = (cap: TokenPriceCap): string =>
  cap.input === NO_CAP && cap.output === NO_CAP
    ? 'none'
    : `${formatAmount(cap.input)} input, ${formatAmount(cap.output)} output per million tokens`;

/** The SDK mode of the flags: a quorum, a local re-check, or verified receipts. */
export function networkMode(flags: NetworkChatFlags): LlmMode {
  if (flags.quorum !== undefined && flags.recheck !== undefined)
    throw usageError('--quorum and --recheck local are two modes: pick one');
  if (flags.quorum !== undefined) {
    const k = parsePositiveInt(flags.quorum, '--quorum');
    if (k < 2) throw usageError(`--quorum ${flags.quorum}: a quorum needs at least 2 providers`);
    return { quorum: k };
  }
  return flags.recheck === 'local' ? 'local' : 'receipt';
}

export const modeText = (mode: LlmMode): string =>
  typeof mode === 'object' ? `quorum of ${mode.quorum}` : mode;

export const hedgeOf = (flags: NetworkChatFlags): { hedgeAfterMs?: number } =>
  flags.hedgeAfter === undefined ? {} : { hedgeAfterMs: parsePositiveInt(flags.hedgeAfter, '--hedge-after') };

/** A network generation's receipts and checks, for people or as JSON. */
export function printNetworkGeneration(io: Io, json: boolean, g: GenerationResult): void {
  if (json) {
    io.out(
      toJson({
        model: g.model,
        text: g.text,
        finishReason: g.finishReason,
        seed: g.seed,
        usage: g.usage,
        promptIds: g.promptIds,
        outputIds: g.outputIds,
        segments: g.segments.map(({ receipt, report: _report, ...segment }) => ({
          ...segment,
          ...(receipt ? { requestId: receipt.receipt.requestId } : {}),
        })),
        receipts: g.receipts.map(signedReceiptToJson),
        report: {
          ...g.report,
          receipts: g.report.receipts.map(({ receipt: _receipt, ...checked }) => checked),
          rejected: g.report.rejected.map(({ report: _report, ...attempt }) => attempt),
        },
      }),
    );
    return;
  }
  const failed = g.report.receipts.flatMap((r) =>
    r.checks.filter((c) => !c.ok).map((c) => `${c.check}: ${c.detail}`),
  );
  printFields(io, [
    ['finish', g.finishReason],
    ['tokens', `${g.usage.promptTokens} prompt, ${g.usage.completionTokens} output`],
    ['seed', g.seed.toString()],
    ...g.receipts.map((signed, i): [string, string] => {
      const r = signed.receipt;
      return [`receipt ${i + 1}`, `${r.requestId} by ${r.provider}, price ${formatAmount(r.price)}`];
    }),
    ...g.segments.map((s, i): [string, string] => [
      `segment ${i + 1}`,
      `tokens ${s.fromToken}..${s.toToken} from ${s.provider}${s.cut ? ` (cut: ${s.cut})` : ''}`,
    ]),
    [
      'checks',
      g.report.ok
        ? `ok: ${g.report.receipts.map((r) => `${r.checks.length} checks`).join(', ')} passed (${g.report.mode})`
        : `FAILED: ${failed.join('; ') || g.report.recheck?.firstFailure?.reason || 'see --json'}`,
    ],
    ...(g.report.recheck
      ? [
          [
            'recheck',
            g.report.recheck.ok ? `ok (${g.report.recheck.margins.positions} positions)` : 'FAILED',
          ] as [string, string],
        ]
      : []),
    [
      'routing',
      `${g.report.failovers} failover(s), ${g.report.hedged ? 'hedged' : 'not hedged'}, ${g.report.rejected.length} rejected`,
    ],
  ]);
}
