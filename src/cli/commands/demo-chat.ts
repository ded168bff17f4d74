import pino from 'pino';
import { DEVNET_TOKEN_PRICES } from '../../devnet/index.js';
import { createGateway, GATEWAY_HEADERS, type Gateway, type GatewayExtra } from '../../gateway/index.js';
import { GlassboxError } from '../../protocol/errors.js';
import { signedReceiptFromJson } from '../../protocol/receipt.js';
import type { Client, TokenPriceCap } from '../../sdk/index.js';
import { sseData } from '../../sdk/llm-transport.js';
import { formatAmount, printFields } from '../io.js';
import type { Context } from '../program.js';

/*
 * The demo's last step: one streamed chat through the gateway (src/gateway, what `glassbox gateway`
 * runs), sent as any OpenAI client sends it, the text printed as it arrives, then what the gateway
 * adds at the end: the provider's signed receipt and each check the SDK ran on it before the tokens
 * counted. The gateway stays up with the devnet, so the user can point an OpenAI client at it.
 */

/** The most the demo's client pays per million tokens: twice the devnet's prices. */
export const DEMO_TOKEN_CAP: TokenPriceCap = {
  input: DEVNET_TOKEN_PRICES.inputPrice * 2_000_000n,
  output: DEVNET_TOKEN_PRICES.outputPrice * 2_000_000n,
};

/** A chat answer's SSE stream is a few KiB; this bounds a misbehaving one. */
const MAX_STREAM_BYTES = 4 * 1024 * 1024;

export async function startDemoGateway(client: Client): Promise<Gateway> {
  return createGateway({ client, maxPrice: DEMO_TOKEN_CAP, logger: pino({ level: 'silent' }), port: 0 });
}

/** Streams one chat through `gateway` and prints it, its receipt(s) and every check. */
export async function streamedChat(ctx: Context, gateway: Gateway, content: string): Promise<void> {
  const { io } = ctx;
  const body = { model: 'tiny-chat', messages: [{ role: 'user', content }], max_tokens: 40, stream: true };
  io.out(`   POST ${gateway.url}/v1/chat/completions ${JSON.stringify(body)}`);
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok || !response.body)
    throw new GlassboxError(
      'PROVIDER_UNAVAILABLE',
      `the gateway answered ${response.status}: ${await response.text()}`,
    );
  const headers = Object.values(GATEWAY_HEADERS)
    .filter((h) => response.headers.has(h))
    .map((h) => `${h}: ${response.headers.get(h)}`);
  // a stream's headers say only what is known before its first byte (the mode); the rest comes last
  if (headers.length > 0) io.out(`   ${headers.join(', ')}`);
  // tiny-chat has random weights: its text is noise, but noise that anyone can check token by token
  const write = io.write?.bind(io);
  write?.('   tiny-chat says: ');
  let text = '';
  let extra: GatewayExtra | undefined;
  for await (const data of sseData(response.body, MAX_STREAM_BYTES, gateway.url)) {
    if (data === '[DONE]') break;
    const chunk = JSON.parse(data) as {
      choices?: { delta?: { content?: string } }[];
      glassbox?: GatewayExtra;
      error?: { message: string };
    };
    if (chunk.error) throw new GlassboxError('RUN_FAILED', `the stream failed: ${chunk.error.message}`);
    const piece = chunk.choices?.[0]?.delta?.content ?? '';
    text += piece;
    write?.(JSON.stringify(piece).slice(1, -1)); // escaped: its text may hold control characters
    extra = chunk.glassbox ?? extra;
  }
  if (write) write('\n');
  else io.out(`   tiny-chat says: ${JSON.stringify(text)}`);
  if (!extra) throw new GlassboxError('RECEIPT_INVALID', 'the stream ended without its receipts');
  showReceipts(ctx, extra);
}

function showReceipts(ctx: Context, extra: GatewayExtra): void {
  const { io } = ctx;
  io.out(
    `   ${extra.outputTokenIds.length} tokens after a ${extra.promptTokenIds.length}-token prompt, seed ${extra.seed}; verified: ${extra.report.ok ? 'yes' : 'NO'}`,
  );
  for (const [i, json] of extra.receipts.entries()) {
    const { receipt } = signedReceiptFromJson(json);
    const segment = extra.segments[i];
    io.out(
      `   receipt ${i + 1} of ${extra.receipts.length}${segment ? `, tokens ${segment.fromToken}-${segment.toToken}` : ''}:`,
    );
    printFields({ out: (line) => io.out(`     ${line}`), err: io.err }, [
      ['provider', receipt.provider],
      ['model', receipt.model],
      ['inputHash', `${receipt.inputHash} (the prompt ids and the request, seed included)`],
      ['outputHash', `${receipt.outputHash} (the output token ids)`],
      ['paramsHash', receipt.paramsHash],
      ['runtime', receipt.runtime],
      ['price', formatAmount(receipt.price)],
    ]);
    const report = extra.report.receipts.find((r) => r.requestId === receipt.requestId);
    for (const check of report?.checks ?? [])
      io.out(`     ${check.ok ? 'ok  ' : 'FAIL'} ${check.check}: ${check.detail}`);
  }
  for (const r of extra.report.rejected) io.out(`   rejected: ${r.provider} ${r.code}: ${r.message}`);
}
