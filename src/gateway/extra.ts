import { signedReceiptToJson } from '../protocol/receipt.js';
import type {
  GenerationResult,
  LlmMode,
  LlmModelListing,
  LlmVerificationReport,
  ReceiptReport,
} from '../sdk/index.js';
import type { GatewayExtra, GatewayModel } from './routes.js';

/*
 * The gateway's `glassbox` field and model objects as JSON: the SDK's results hold bigints and
 * whole receipts inside each report; the answer lists the receipts once and names them by request
 * id elsewhere, with every bigint a decimal string.
 */

const TOKENS_PER_MILLION = 1_000_000n;

/** What the x-glassbox-mode header says of a mode. */
export const modeName = (mode: LlmMode | undefined): string =>
  mode === undefined ? 'receipt' : typeof mode === 'object' ? `quorum:${mode.quorum}` : mode;

const receiptReportJson = (r: ReceiptReport) => ({
  provider: r.provider,
  requestId: r.requestId,
  ok: r.ok,
  checks: r.checks.map((c) => ({ ...c })),
});

/** The report with its receipts named by request id (the answer lists them once, beside). */
export function reportJson(report: LlmVerificationReport): GatewayExtra['report'] {
  return {
    ok: report.ok,
    mode: report.mode,
    receipts: report.receipts.map(receiptReportJson),
    rejected: report.rejected.map(({ report: checked, ...attempt }) => ({
      ...attempt,
      ...(checked ? { report: receiptReportJson(checked) } : {}),
    })),
    hedged: report.hedged,
    failovers: report.failovers,
    ...(report.recheck ? { recheck: report.recheck } : {}),
    ...(report.quorum ? { quorum: report.quorum } : {}),
  };
}

export function extraOf(result: GenerationResult): GatewayExtra {
  return {
    receipts: result.receipts.map(signedReceiptToJson),
    report: reportJson(result.report),
    segments: result.segments.map((s) => ({
      provider: s.provider,
      fromToken: s.fromToken,
      toToken: s.toToken,
      ...(s.receipt ? { requestId: s.receipt.receipt.requestId } : {}),
      ...(s.cut === undefined ? {} : { cut: s.cut }),
    })),
    seed: result.seed.toString(),
    promptTokenIds: [...result.promptIds],
    outputTokenIds: [...result.outputIds],
  };
}

/** OpenAI's model object for a model on the network; `created` is when this gateway started. */
export function modelJson(m: LlmModelListing, created: number): GatewayModel {
  return {
    id: m.id,
    object: 'model',
    created,
    owned_by: 'glassbox',
    name: m.name,
    glassbox: {
      providers: m.providers,
      pricePerMillion: {
        input: (m.price.input * TOKENS_PER_MILLION).toString(),
        output: (m.price.output * TOKENS_PER_MILLION).toString(),
      },
      contextLength: m.contextLength,
    },
  };
}
