import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keccak256, toHex, type Address, type Hex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { deposit } from '../../src/chain/index.js';
import {
  createNode,
  parseNodeConfig,
  type GlassboxNode,
  type NodeConfigInput,
} from '../../src/node/index.js';
import { BINARY_TYPE, REQUEST_HEADER, voucherToJson } from '../../src/protocol/api.js';
import { hashTensors } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import type { ModelPackage } from '../../src/protocol/manifest.js';
import { requestMessage, signRequest } from '../../src/protocol/request.js';
import { signVoucher, type SignedVoucher } from '../../src/protocol/voucher.js';
import { E18, HOLD_DUE_MS, startTestChain, TEST_PARAMS, type TestChain } from '../chain/support.js';
import { exampleDir } from '../support/examples.js';
import { faultyNode, type NodeFaults } from '../support/faults.js';

export { nonCanonical } from '../support/signatures.js';

export { E18, HOLD_DUE_MS, startTestChain, TEST_PARAMS, type TestChain };

/** Account roles on the test chain: providers 1..4, clients 6..9. */
export const PROVIDER = [1, 2, 3, 4] as const;
export const CLIENT = [6, 7, 8, 9] as const;

export const PRICE = 1_000_000n;

let counter = 0;
export const requestId = (): Hex => keccak256(toHex(`request:${process.pid}:${Date.now()}:${counter++}`));

export async function tempDir(prefix = 'glassbox-node-'): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** A node config for provider account `i` on the test chain, serving example models. */
export function nodeConfig(
  chain: TestChain,
  i: number,
  dataDir: string,
  over: Partial<NodeConfigInput> = {},
): NodeConfigInput {
  return {
    chain: {
      rpcUrl: chain.anvil.rpcUrl,
      chainId: chain.anvil.chainId,
      deployment: chain.deployment,
      pollingIntervalMs: 5,
    },
    keys: { stakingKey: chain.key(i), signingKey: keccak256(toHex(`signer:${i}`)) },
    dataDir,
    models: [
      { model: exampleDir('iris'), price: PRICE.toString() },
      { model: exampleDir('iris-int8'), price: PRICE.toString() },
    ],
    stake: (200n * E18).toString(),
    creditLimit: (100n * PRICE).toString(),
    redeemIntervalMs: 0,
    shutdownGraceMs: 1000,
    logLevel: (process.env.GLASSBOX_TEST_LOG as 'silent') ?? 'silent',
    ...over,
  };
}

/** Starts a node for provider account `i`; with `faults`, a lying, slow or withholding one. */
export async function startTestNode(
  chain: TestChain,
  i: number,
  dataDir: string,
  over: Partial<NodeConfigInput> = {},
  faults?: NodeFaults,
): Promise<GlassboxNode> {
  const config = parseNodeConfig(nodeConfig(chain, i, dataDir, over));
  return (await createNode(config, faults ? faultyNode(config, faults) : {})).start();
}

export const IRIS_INPUTS = {
  features: { dtype: 'float32', shape: [2, 4], data: [4.7, 3.2, 1.3, 0.2, 6.3, 3.3, 6, 2.5] },
} as const;
export const INT8_INPUTS = {
  features: { dtype: 'uint8', shape: [2, 4], data: [47, 32, 13, 2, 63, 33, 60, 25] },
} as const;

/** The domain a node's clients sign requests under: its receipts' (src/protocol/request.ts). */
export const requestDomainOf = (node: GlassboxNode) => ({
  chainId: node.chain.chainId,
  verifyingContract: node.chain.deployment.contracts.receiptLedger,
});

/** A well-formed signature that proves nothing (for requests refused before it is looked at). */
export const DUMMY_SIGNATURE: Hex = `0x${'11'.repeat(64)}1b`;

/**
 * Signs an infer request (a JSON body, or a binary head with the inputs' hash given) as the client
 * whose key is `key`, for `node`: the body with `signature` set, over exactly its fields. A body
 * that can't be signed (a malformed field, inputs that don't decode) gets DUMMY_SIGNATURE: the
 * node refuses it before it checks the signature.
 */
export async function signBody(
  node: GlassboxNode,
  key: Hex,
  body: Record<string, unknown>,
  inputHash?: Hex,
): Promise<Record<string, unknown>> {
  let signature = DUMMY_SIGNATURE;
  try {
    const head = body as {
      requestId: string;
      client: string;
      model: string;
      maxPrice: string;
      trace?: boolean;
    };
    const pkg = node.models.get(head.model)!;
    const hash = inputHash ?? hashTensors(inputsFromJson(pkg.manifest.inputs, body.inputs));
    const message = requestMessage(head, { provider: node.address, inputHash: hash });
    signature = await signRequest(privateKeyToAccount(key), message, requestDomainOf(node));
  } catch {
    // unsignable: see above
  }
  return { ...body, signature };
}

/** A signed JSON infer request for an example model (iris or iris-int8: the inputs follow its dtype). */
export async function inferBody(
  node: GlassboxNode,
  pkg: ModelPackage,
  key: Hex,
  over: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  return signBody(node, key, {
    requestId: requestId(),
    model: pkg.id,
    client: privateKeyToAccount(key).address,
    maxPrice: (10n * PRICE).toString(),
    inputs: pkg.manifest.inputs[0]!.dtype === 'uint8' ? INT8_INPUTS : IRIS_INPUTS,
    ...over,
  });
}

/** Deposits `amount` into the escrow for each of the test clients: credit needs money behind it. */
export async function fundClients(chain: TestChain, amount = 1000n * E18): Promise<void> {
  for (const i of CLIENT) await deposit(chain.as(i), amount);
}

export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export async function postBinary(
  url: string,
  head: unknown,
  bytes: Uint8Array,
  accept = BINARY_TYPE,
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': BINARY_TYPE, accept, [REQUEST_HEADER]: JSON.stringify(head) },
    body: bytes,
  });
}

/** A client: its key, and cumulative vouchers to a provider. */
export function testClient(chain: TestChain, i: number) {
  const key = chain.key(i);
  const account = privateKeyToAccount(key);
  const domain = {
    chainId: chain.anvil.chainId,
    verifyingContract: chain.deployment.contracts.paymentEscrow,
  };
  return {
    address: account.address,
    key,
    async voucher(provider: Address, amount: bigint): Promise<SignedVoucher> {
      return signVoucher(account, { client: account.address, provider, amount }, domain);
    },
    async voucherJson(provider: Address, amount: bigint) {
      return voucherToJson(await this.voucher(provider, amount));
    },
    deposit: (amount: bigint) => deposit(chain.as(i), amount),
  };
}

export async function stopAll(nodes: (GlassboxNode | undefined)[]): Promise<void> {
  await Promise.all(nodes.map((n) => n?.stop().catch(() => undefined)));
}
