import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getChallenge, openChallenge, withAccount } from '../../src/chain/index.js';
import { devnetClient, startDevnet, type Devnet } from '../../src/devnet/index.js';
import type { EvidenceResponse } from '../../src/protocol/api.js';
import { encodeTensors } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import { signedReceiptToJson } from '../../src/protocol/receipt.js';
import { closeClient, infer } from '../../src/sdk/index.js';
import { createFsStore, loadModel } from '../../src/store/index.js';
import { captureCli, devnetChainArgs } from '../support/devnet.js';
import { exampleDir } from '../support/examples.js';

/*
 * `glassbox disputes` and `glassbox node status` against a devnet with one provider, one verifier
 * and one committee member: a challenge of an honest receipt is voted down, and both commands show it.
 */
let devnet: Devnet;
let challengeId: bigint;

beforeAll(async () => {
  devnet = await startDevnet({
    providers: 1,
    verifiers: 1,
    committee: 1,
    models: [exampleDir('iris-int8')],
    params: { committeeSize: 1, commitPeriodMs: 30_000, revealPeriodMs: 30_000 },
    nodeConfig: { logLevel: 'error', batch: { maxReceipts: 1, maxAgeMs: 1000 } },
    roleConfig: { verifier: { pollIntervalMs: 200 } },
  });
  const client = await devnetClient(devnet);
  const model = devnet.models[0]!;
  const question = { features: [[51, 35, 14, 2]] };
  const answer = await infer(client, {
    model: model.id,
    inputs: question,
    mode: 'receipt',
    maxPrice: 10n ** 16n,
  });
  await closeClient(client);
  const pkg = await loadModel(createFsStore(join(devnet.dir, 'store')), model.id);
  const evidence: EvidenceResponse = {
    receipt: signedReceiptToJson(answer.receipts[0]!),
    inputs: Buffer.from(encodeTensors(inputsFromJson(pkg.manifest.inputs, question))).toString('base64'),
  };
  const challenger = withAccount(client.chain, devnet.client.privateKey);
  ({ challengeId } = await openChallenge(challenger, {
    ...answer.receipts[0]!,
    inputsUri: `data:application/json;base64,${Buffer.from(JSON.stringify(evidence)).toString('base64')}`,
  }));
  const until = Date.now() + 60_000;
  while ((await getChallenge(challenger, challengeId)).status === 'open') {
    if (Date.now() > until) throw new Error('the challenge was not settled in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}, 120_000);
afterAll(async () => {
  await devnet?.stop();
});

const glassbox = (...argv: string[]) => captureCli(argv);

const connection = () => devnetChainArgs(devnet);

describe('glassbox disputes and node status', () => {
  it('disputes lists the challenge with its committee, the vote and the bond the challenger lost', async () => {
    const text = await glassbox('disputes', ...connection());
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(new RegExp(`#${challengeId} wrong against ${devnet.providers[0]!.address}`));
    expect(text.out).toMatch(/status\s+rejected/);
    expect(text.out).toMatch(new RegExp(`${devnet.committee[0]!.address} innocent`));
    expect(text.out).toMatch(
      /bond lost 10 tokens \(10000000000000000000 base units\), provider got 5 tokens \(5000000000000000000 base units\)/,
    );
    const json = await glassbox('disputes', '--json', ...connection());
    const [row] = JSON.parse(json.out) as { status: string; votes: { revealed: boolean }[] }[];
    expect(row!.status).toBe('rejected');
    expect(row!.votes[0]!.revealed).toBe(true);
  });

  it("node status shows a committee member's duty and a verifier's samples", async () => {
    const member = await glassbox('node', 'status', '--url', devnet.committee[0]!.url);
    expect(member.code).toBe(0);
    expect(member.out).toMatch(/roles\s+committee/);
    expect(member.out).toMatch(new RegExp(`#${challengeId} innocent revealed`));
    const verifier = await glassbox('node', 'status', '--url', devnet.verifiers[0]!.url, '--json');
    const status = JSON.parse(verifier.out) as { roles: string[]; verifier: { batchesSeen: number } };
    expect(status.roles).toEqual(['verifier']);
    expect(status.verifier.batchesSeen).toBeGreaterThan(0);
  });

  it('node status names what is wrong when nothing answers', async () => {
    const gone = await glassbox('node', 'status', '--url', 'http://127.0.0.1:9');
    expect(gone.code).not.toBe(0);
    expect(gone.err).toMatch(/no node status at http:\/\/127.0.0.1:9/);
  });
});
