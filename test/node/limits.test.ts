import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  challengeAvailability,
  getBatchCommits,
  getChallenge,
  getProvider,
  readChainParams,
} from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import type { StoredReceipt } from '../../src/protocol/api.js';
import type { GlassboxError } from '../../src/protocol/errors.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { dataCap } from '../../src/protocol/limits.js';
import { TEST_RUNTIME } from '../chain/support.js';
import { receiptHash, signedReceiptFromJson } from '../../src/protocol/receipt.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import {
  CLIENT,
  inferBody,
  post,
  PROVIDER,
  startTestChain,
  startTestNode,
  tempDir,
  fundClients,
  type TestChain,
} from './support.js';

/*
 * Audit C-1: a receipt is only as safe for its provider as the provider's ability to publish its
 * data on chain when challenged. The node refuses what it could not publish, and answers on chain
 * what it signed, so an attacker can't get an honest provider slashed by sending big inputs.
 */

let chain: TestChain;
let node: GlassboxNode;
let dataDir: { dir: string; remove(): Promise<void> };
let iris: ModelPackage;
const ATTACKER = 11;

/** `rows` iris flowers: the input is [rows, 4] float32, the outputs grow with it. */
const irisRows = (rows: number) => ({
  features: {
    dtype: 'float32',
    shape: [rows, 4],
    data: Array.from({ length: rows * 4 }, (_, i) => 1 + (i % 7)),
  },
});

beforeAll(async () => {
  chain = await startTestChain();
  dataDir = await tempDir();
  node = await startTestNode(chain, PROVIDER[0], dataDir.dir, {
    batch: { maxReceipts: 1, maxAgeMs: 60_000 },
  });
  iris = [...node.models.values()].find((p) => p.manifest.name === 'iris')!;
  await fundClients(chain);
});

afterAll(async () => {
  await node?.stop();
  await chain?.stop();
  await dataDir?.remove();
});

describe('C-1 inputs too large to publish', () => {
  it('refuses inputs and answers over the data cap (413 / 422 naming the cap) and signs nothing for them', async () => {
    const params = await readChainParams(chain.as(0));
    const { gasLimit } = await chain.as(0).publicClient.getBlock();
    const cap = dataCap({ maxDataBytes: params.maxDataBytes, blockGasLimit: gasLimit });
    expect(cap).toBe(params.maxDataBytes); // anvil's 30M-gas blocks carry the chain's whole cap

    const key = chain.key(CLIENT[0]);
    // the audit's attack: 131,072 rows, 2 MiB of float32
    const huge = await inferBody(node, iris, key, { inputs: irisRows(131_072) });
    const r = await post(`${node.url}/v1/infer`, huge);
    expect(r.status).toBe(413);
    const problem = (await r.json()) as { code: string; field: string; message: string };
    // the cap in bytes, and in values of the inputs' one dtype
    expect(problem).toMatchObject({
      code: 'INPUT_TOO_LARGE',
      field: 'inputs',
      details: { limitBytes: cap, limitValues: cap / 4 },
    });
    expect(problem.message).toMatch(new RegExp(`at most ${cap} bytes \\(about ${cap / 4} float32 values\\)`));
    expect((await fetch(`${node.url}/v1/receipts/${huge.requestId as string}`)).status).toBe(404);

    // inputs under the cap whose outputs take the total over it: refused after the run, unsigned
    const wide = await inferBody(node, iris, key, { inputs: irisRows(2500) }); // 40 KB in, ~50 KB out
    const w = await post(`${node.url}/v1/infer`, wide);
    expect(w.status).toBe(422);
    expect(await w.json()).toMatchObject({ code: 'OUTPUT_TOO_LARGE', field: 'outputs' });
    expect((await fetch(`${node.url}/v1/receipts/${wide.requestId as string}`)).status).toBe(404);
  });

  it('the largest receipt it does sign, challenged for availability, is answered on chain by the node: the provider keeps its stake', async () => {
    const body = await inferBody(node, iris, chain.key(CLIENT[0]), { inputs: irisRows(1200) }); // ~19 KB in, ~24 KB out
    const r = await post(`${node.url}/v1/infer`, body);
    expect(r.status).toBe(200);
    const { receipt } = (await r.json()) as { receipt: StoredReceipt['receipt'] };
    await node.flushBatches();
    const stored = (await (
      await fetch(`${node.url}/v1/receipts/${body.requestId as string}`)
    ).json()) as StoredReceipt;
    const [commit] = (await getBatchCommits(chain.as(0), { provider: node.address })).filter(
      (e) => e.args.root === stored.batch!.root,
    );
    const stakeBefore = (await getProvider(chain.as(0), node.address)).stake;
    // the attacker asks for the data on chain, hoping the provider can't publish it
    const { challengeId } = await challengeAvailability(chain.as(ATTACKER), {
      provider: node.address,
      batchId: commit!.args.batchId,
      receiptHash: receiptHash(signedReceiptFromJson(receipt).receipt),
      proof: stored.batch!.proof,
    });
    await node.tickRoles(); // the node publishes receipt, inputs and outputs in one transaction
    expect((await getChallenge(chain.as(0), challengeId)).status).toBe('answered');
    expect((await getProvider(chain.as(0), node.address)).stake).toBe(stakeBefore);
  });
});

describe('C-3 a provider may serve only under an admitted runtime profile', () => {
  it('refuses to start under a profile the chain never admitted, naming it', async () => {
    const other = await startTestChain(undefined, 4, [TEST_RUNTIME]); // the engine's profile not admitted
    const dir = await tempDir();
    try {
      const error = await startTestNode(other, PROVIDER[0], dir.dir).catch((e: unknown) => e);
      expect(isGlassboxError(error, 'PROFILE_MISMATCH')).toBe(true);
      expect((error as GlassboxError).field).toBe('runtime');
      expect((error as GlassboxError).shortMessage).toMatch(/not admitted on chain/);
      expect((await getProvider(other.as(0), other.address(PROVIDER[0]))).registered).toBe(false);
    } finally {
      await other.stop();
      await dir.remove();
    }
  });
});
