import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  answerAvailabilityChunk,
  challengeAvailability,
  DEFAULT_PARAMS,
  findChallenge,
  getBatchCommits,
  getChallenge,
  getProvider,
  getPublishedChunks,
  getPublishedData,
  getTokenBalance,
  resolveChallenge,
} from '../../src/chain/index.js';
import type { GlassboxNode } from '../../src/node/index.js';
import { RECEIPT_HEADER, type StoredReceipt } from '../../src/protocol/api.js';
import { CHUNK_BYTES, chunkData } from '../../src/protocol/data.js';
import { decodeTensors, encodeTensors, hashTensors } from '../../src/protocol/encoding.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { receiptHash, signedReceiptFromJson, type SignedReceipt } from '../../src/protocol/receipt.js';
import type { TensorMap } from '../../src/protocol/tensor.js';
import { closeClient, createClient, infer, verifyReceipt } from '../../src/sdk/index.js';
import { ENGINE_RUNTIME_HASH, registerVoter } from '../chain/support.js';
import { exampleDir } from '../support/examples.js';
import {
  CLIENT,
  E18,
  fundClients,
  postBinary,
  PRICE,
  PROVIDER,
  requestId,
  signBody,
  startTestChain,
  startTestNode,
  tempDir,
  TEST_PARAMS,
  type TestChain,
} from './support.js';
import { type NodeFaults } from '../support/faults.js';

/*
 * Large receipts on a real node and chain (audit C-1, issue 16): with the chain's default data cap
 * a million float32 values are served in receipt mode, and a receipt too large for one
 * transaction stays answerable: challenged for availability, the honest node publishes its data
 * chunk by chunk and keeps its stake; a node that does not is slashed as before; a verifier
 * re-executes what was published in chunks.
 */

let chain: TestChain;
const nodes: GlassboxNode[] = [];
const dirs: { remove(): Promise<void> }[] = [];
const ATTACKER = 11;

beforeAll(async () => {
  chain = await startTestChain({ ...TEST_PARAMS, maxDataBytes: DEFAULT_PARAMS.maxDataBytes });
  await fundClients(chain);
  // a committee pool for the engine's runtime, so the verifier's challenge can be opened
  await registerVoter(
    chain.as(10),
    { endpoint: 'http://voter', signer: chain.address(10), stake: 100n * E18 },
    ENGINE_RUNTIME_HASH,
  );
});

afterAll(async () => {
  for (const n of nodes) await n.stop().catch(() => undefined);
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

async function node(
  i: number,
  over: Parameters<typeof startTestNode>[3] = {},
  faults?: NodeFaults,
): Promise<GlassboxNode> {
  const dir = await tempDir();
  dirs.push(dir);
  const n = await startTestNode(
    chain,
    i,
    dir.dir,
    { batch: { maxReceipts: 1, maxAgeMs: 60_000 }, ...over },
    faults,
  );
  nodes.push(n);
  return n;
}

const irisOf = (n: GlassboxNode) => [...n.models.values()].find((p) => p.manifest.name === 'iris')!;
const int8Of = (n: GlassboxNode) => [...n.models.values()].find((p) => p.manifest.name === 'iris-int8')!;

/** `rows` flowers for iris (float32) or iris-int8 (uint8): [rows, 4]. */
function flowers(pkg: ModelPackage, rows: number): TensorMap {
  const values = Array.from({ length: rows * 4 }, (_, i) => 1 + ((i * 7) % 60) / 10);
  return pkg.manifest.inputs[0]!.dtype === 'uint8'
    ? { features: { dtype: 'uint8', shape: [rows, 4], data: Uint8Array.from(values, (v) => v * 10) } }
    : { features: { dtype: 'float32', shape: [rows, 4], data: Float32Array.from(values) } };
}

/** One request in the binary transport, as a client signs it; the answer's outputs and receipt. */
async function ask(n: GlassboxNode, pkg: ModelPackage, inputs: TensorMap) {
  const client = chain.address(CLIENT[0]);
  const head = { requestId: requestId(), model: pkg.id, client, maxPrice: (10n * PRICE).toString() };
  const signed = await signBody(n, chain.key(CLIENT[0]), head, hashTensors(inputs));
  const res = await postBinary(`${n.url}/v1/infer`, signed, encodeTensors(inputs));
  expect(
    res.status,
    await res
      .clone()
      .text()
      .then((t) => t.slice(0, 300)),
  ).toBe(200);
  const outputs = decodeTensors(new Uint8Array(await res.arrayBuffer()));
  const receipt = signedReceiptFromJson(JSON.parse(res.headers.get(RECEIPT_HEADER)!));
  return { outputs, receipt, requestId: head.requestId };
}

/** The committed batch id and inclusion proof of a receipt, from its node. */
async function committed(n: GlassboxNode, signed: SignedReceipt) {
  await n.flushBatches();
  const stored = (await (
    await fetch(`${n.url}/v1/receipts/${signed.receipt.requestId}`)
  ).json()) as StoredReceipt;
  const [commit] = (await getBatchCommits(chain.as(0), { provider: n.address })).filter(
    (e) => e.args.root === stored.batch!.root,
  );
  return { batchId: commit!.args.batchId, proof: stored.batch!.proof };
}

describe('C-1 large receipts stay answerable', () => {
  it(
    'a million float32 values (4 MiB) in the binary transport are served in receipt mode; challenged, the node answers chunk by chunk and keeps its stake, and the challenger gets its bond back',
    { timeout: 300_000 },
    async () => {
      const honest = await node(PROVIDER[0]);
      const iris = irisOf(honest);
      const inputs = flowers(iris, 1 << 18); // 262,144 rows: 1,048,576 float32 values
      const inputBytes = encodeTensors(inputs);
      expect(inputBytes.length).toBeGreaterThan(4 << 20);
      const { outputs, receipt } = await ask(honest, iris, inputs);

      // a receipt the client checks like any other: hashes, signature, signer, price, runtime
      const client = await createClient({
        rpcUrl: chain.anvil.rpcUrl,
        chainId: chain.anvil.chainId,
        deployment: chain.deployment,
        account: chain.key(CLIENT[0]),
        pollingIntervalMs: 5,
      });
      try {
        const report = await verifyReceipt(client, {
          receipt,
          model: iris.id,
          requestId: receipt.receipt.requestId,
          provider: honest.address,
          maxPrice: 10n * PRICE,
          inputs,
          outputs,
        });
        expect(report.checks.filter((c) => !c.ok)).toEqual([]);
        // inputs over the chain's cap are refused by the client before any provider is asked
        const cap = DEFAULT_PARAMS.maxDataBytes;
        const error = await infer(client, {
          model: iris.id,
          inputs: flowers(iris, cap / 16 + 1),
          maxPrice: 10n * PRICE,
        }).catch((e: unknown) => e);
        expect(error).toMatchObject({
          code: 'INPUT_TOO_LARGE',
          field: 'inputs',
          details: { limitBytes: cap, limitValues: cap / 4 },
        });
      } finally {
        await closeClient(client);
      }
      const outputBytes = encodeTensors(outputs);
      const [ins, outs] = [chunkData(inputBytes), chunkData(outputBytes)];
      expect(receipt.receipt.inputHash).toBe(ins.hash);
      // 4 MiB in and 5 MiB out, each with a few bytes of header: one chunk more a side
      expect([ins.count, outs.count]).toEqual([(4 << 20) / CHUNK_BYTES + 1, (5 << 20) / CHUNK_BYTES + 1]);

      // the audit's attack, now on data no transaction can carry: ask for it on chain
      const { batchId, proof } = await committed(honest, receipt);
      const stakeBefore = (await getProvider(chain.as(0), honest.address)).stake;
      const tokensBefore = await getTokenBalance(chain.as(0), chain.address(ATTACKER));
      const { challengeId } = await challengeAvailability(chain.as(ATTACKER), {
        provider: honest.address,
        batchId,
        receiptHash: receiptHash(receipt.receipt),
        proof,
      });
      // the client, who has the inputs, publishes some chunks itself (data is data): the node
      // publishes the rest, as it does after a restart half way
      for (const i of [0, 5, 63])
        await answerAvailabilityChunk(chain.as(CLIENT[0]), {
          challengeId,
          receipt: receipt.receipt,
          side: 'inputs',
          chunk: ins.chunk(i),
        });
      await honest.tickRoles(); // the other 143 chunks, a transaction each
      expect((await getChallenge(chain.as(0), challengeId)).status).toBe('answered');
      expect((await getProvider(chain.as(0), honest.address)).stake).toBe(stakeBefore);
      expect(await getTokenBalance(chain.as(0), chain.address(ATTACKER))).toBe(tokensBefore);
      // and the data is public, exactly as the client sent it and the node answered
      const published = await getPublishedData(chain.as(0), challengeId);
      expect(Buffer.from(published!.inputs).equals(inputBytes)).toBe(true);
      expect(Buffer.from(published!.outputs).equals(outputBytes)).toBe(true);
    },
  );

  it('a node that does not answer is slashed as before', async () => {
    const withholding = await node(PROVIDER[1], {}, { withhold: 'batches' });
    const int8 = int8Of(withholding);
    const { receipt } = await ask(withholding, int8, flowers(int8, 20_000)); // 80 KB in, 400 KB out
    const { batchId, proof } = await committed(withholding, receipt);
    const stakeBefore = (await getProvider(chain.as(0), withholding.address)).stake;
    const { challengeId } = await challengeAvailability(chain.as(ATTACKER), {
      provider: withholding.address,
      batchId,
      receiptHash: receiptHash(receipt.receipt),
      proof,
    });
    await withholding.tickRoles();
    expect(await getPublishedChunks(chain.as(0), challengeId)).toEqual({
      inputs: { count: 0, bits: 0n },
      outputs: { count: 0, bits: 0n },
    });
    await chain.increaseTime(TEST_PARAMS.answerPeriodMs!);
    const resolved = await resolveChallenge(chain.as(0), challengeId);
    expect(resolved.status).toBe('upheld');
    expect((await getProvider(chain.as(0), withholding.address)).stake).toBe(stakeBefore - resolved.slashed);
  });

  it('a verifier re-executes a receipt whose withheld data was published in chunks, and challenges it when wrong', async () => {
    const dodger = await node(
      PROVIDER[2],
      { models: [{ model: exampleDir('iris-int8'), price: PRICE.toString() }] },
      { perturb: 1, withhold: 'inputs' },
    );
    const verifier = await node(9, {
      roles: ['verifier'],
      stake: '0',
      verifier: { sampleRate: 1, dataDeadlineMs: 0, pollIntervalMs: 600_000 },
    });
    const int8 = int8Of(dodger);
    const { receipt } = await ask(dodger, int8, flowers(int8, 20_000));
    await committed(dodger, receipt);
    const hash = receiptHash(receipt.receipt);
    await chain.increaseTime(1000); // the block after the commit: the sample's draw
    await verifier.tickRoles(); // inputs not served: an availability challenge
    const data = await findChallenge(chain.as(0), { kind: 'unavailable', receiptHash: hash });
    expect(data).toBeDefined();
    await dodger.tickRoles(); // published in chunks: 2 of inputs, 7 of outputs
    expect((await getChallenge(chain.as(0), data!)).status).toBe('answered');
    expect(await getPublishedChunks(chain.as(0), data!)).toMatchObject({
      inputs: { count: 2 },
      outputs: { count: 7 },
    });
    await verifier.tickRoles(); // rebuilt from the chunks, re-executed: wrong, so challenged
    const wrong = await findChallenge(chain.as(0), { kind: 'wrong', receiptHash: hash });
    expect(wrong).toBeDefined();
    expect((await getChallenge(chain.as(0), wrong!)).provider).toBe(dodger.address);
  });
});
