import { getBatchCommits, getModel, getRedeemed } from '../../chain/index.js';
import { devnetClient, startDevnet } from '../../devnet/index.js';
import { closeClient, charged, infer, settle, type InferReturnType } from '../../sdk/index.js';
import { writeDevnetProfile } from '../connection.js';
import { defaultStoreDir, formatAmount, printFields } from '../io.js';
import type { Gateway } from '../../gateway/index.js';
import { startDemoGateway, streamedChat } from './demo-chat.js';
import { devnetProfile, stopDevnet } from './devnet.js';
import type { Context } from '../program.js';

/** The network demo: what `npm start` shows a newcomer, step by step, on a fresh devnet. */
export async function runNetworkDemo(ctx: Context): Promise<void> {
  const { io } = ctx;
  const stopped = ctx.untilStopped; // Ctrl-C at any step still stops the devnet cleanly
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  io.out('Glassbox demo: a local network of 3 providers on an anvil chain.\n');
  const devnet = await startDevnet({
    providers: 3,
    // Short batch and redemption intervals, so the demo can show both within seconds.
    nodeConfig: { batch: { maxReceipts: 256, maxAgeMs: 1000 }, redeemIntervalMs: 1000 },
    // The user's store: `glassbox model inspect` and `glassbox run` know the ids printed here.
    store: defaultStoreDir(),
    log: (line) => io.out(`  ${line}`),
  });
  await writeDevnetProfile(devnetProfile(devnet));
  const client = await devnetClient(devnet, { pollingIntervalMs: 50 });
  let gateway: Gateway | undefined;
  try {
    const iris = devnet.models.find((m) => m.name === 'iris')!;
    const record = await getModel(client.chain, iris.id);
    io.out(
      `\n1. Published: model ${iris.name} is ${iris.id}, the CID of its manifest; registered on chain by ${record?.owner}.`,
    );

    const setosa = { features: [[5.1, 3.5, 1.4, 0.2]] };
    const one = await infer(client, {
      model: iris.id,
      inputs: setosa,
      mode: 'receipt',
      maxPrice: 10n ** 16n,
    });
    io.out(
      `\n2. Receipt mode (${elapsed()} since start): one provider answered, and its signed receipt verified.`,
    );
    showAnswer(ctx, one);

    const virginica = { features: [[6.3, 3.3, 6.0, 2.5]] };
    const three = await infer(client, {
      model: iris.id,
      inputs: virginica,
      mode: { quorum: 3 },
      maxPrice: 10n ** 16n,
    });
    io.out(
      `\n3. Quorum 3: three providers answered the same question; their outputs agree under the model's comparison policy.`,
    );
    showAnswer(ctx, three);

    io.out('\n4. Settlement on chain: providers commit Merkle roots of their receipts in batches…');
    const batches = await waitFor(async () => {
      const commits = await getBatchCommits(client.chain, {});
      return commits.length >= 3 ? commits : undefined;
    });
    for (const b of batches)
      io.out(
        `   batch ${b.args.batchId} by ${b.args.provider}: ${b.args.count} receipt(s), root ${b.args.root}`,
      );

    io.out(
      '\n5. Payment: the client signs one cumulative voucher per provider; providers redeem it from the escrow.',
    );
    await settle(client);
    const owed = charged(client);
    let advanced = false;
    await waitFor(async () => {
      for (const [provider, { charged: amount }] of Object.entries(owed))
        if (
          (await getRedeemed(client.chain, {
            client: devnet.client.address,
            provider: provider as `0x${string}`,
          })) !== amount
        ) {
          // A provider redeems again only once its previous redemption's hold is over; a devnet
          // can move its clock instead of waiting.
          await devnet.advanceTime(devnet.deployment.params.paymentHoldMs);
          advanced = true;
          return undefined;
        }
      return true;
    });
    if (advanced)
      io.out(
        `   (the devnet's clock was moved past the escrow's hold, so the providers could redeem the rest)`,
      );
    for (const [provider, { charged: amount, receipts }] of Object.entries(owed))
      io.out(
        `   ${provider}: ${receipts} answer(s), charged ${formatAmount(amount)}, redeemed ${formatAmount(amount)} (held by the escrow until no challenge can convict the provider, then paid out)`,
      );

    io.out(
      `\n6. An LLM (${elapsed()} since start): the providers also serve tiny-chat, priced per token. One streamed chat through the gateway, an OpenAI-compatible endpoint on loopback (what \`glassbox gateway\` runs): it picks a provider under a price cap, checks the receipt before the tokens count, and pays by voucher.`,
    );
    gateway = await startDemoGateway(client);
    await streamedChat(ctx, gateway, 'What makes an answer verifiable?');

    io.out(`\nThe network stays up (${elapsed()} in all). Try, in another terminal:`);
    io.out(`  npx glassbox infer ${iris.id} --input '{"features": [[5.9, 3.0, 5.1, 1.8]]}' --quorum 3`);
    io.out(`  npx glassbox providers ${iris.id}`);
    io.out(
      `  npx glassbox infer ${iris.id} --input '{"features": [[5.9, 3.0, 5.1, 1.8]]}' --save r.json && npx glassbox verify r.json`,
    );
    io.out(
      `  curl -N ${gateway.url}/v1/chat/completions -H 'content-type: application/json' -d '{"model": "tiny-chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20, "stream": true}'`,
    );
    io.out(`  (or any OpenAI client with base URL ${gateway.url}/v1)`);
    printFields(io, [
      ['gateway', `${gateway.url}/v1`],
      ['rpc url', devnet.rpcUrl],
      ['addresses', devnet.deploymentFile],
      ['client key', devnet.client.privateKey],
    ]);
    io.out('Ctrl-C stops it.');
    await stopped;
  } finally {
    await gateway?.close();
    await closeClient(client);
    await stopDevnet(ctx, devnet);
  }
}

function showAnswer(ctx: Context, result: InferReturnType): void {
  const label = result.outputs.label;
  const names = ['setosa', 'versicolor', 'virginica'];
  if (label?.dtype === 'int64') ctx.io.out(`   class: ${names[Number(label.data[0])]}`);
  for (const r of result.report.receipts) {
    const failed = r.checks.filter((c) => !c.ok);
    ctx.io.out(
      `   ${r.provider} answered; receipt ${r.ok ? 'verified' : 'FAILED'}: ${r.checks.length - failed.length}/${r.checks.length} checks (signature, signer on chain, stake, model, hashes, price, runtime)`,
    );
    ctx.io.out(
      `     outputHash ${r.receipt.receipt.outputHash}, price ${formatAmount(r.receipt.receipt.price)}`,
    );
  }
}

async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('the demo timed out waiting for the chain');
    await new Promise((r) => setTimeout(r, 250));
  }
}
