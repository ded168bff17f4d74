import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toHex } from 'viem';
import { afterEach, describe, expect, it } from 'vitest';
import { hashTensors } from '../../src/protocol/encoding.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import { requestMessage, signRequest } from '../../src/protocol/request.js';
import { getModels, infer, postInfer, postVoucher, type Client } from '../../src/sdk/index.js';
import { exampleSamples } from '../support/examples.js';
import { failure } from '../support/wire.js';
import { MIN_STAKE, useNetwork } from './support/network.js';
import type { TestProvider } from './support/provider.js';

/*
 * Every provider answer is read with a size cap and validated before use: a provider that answers
 * garbage or too much is refused with a typed error naming the field (or the size), and the client
 * fails over to the next provider instead of crashing or buffering without end.
 */

const { net: network, newClient } = useNetwork();
const pkg = () => network().models['iris-int8'];
const run = (c: Client, over: Partial<Parameters<typeof infer>[1]> = {}) =>
  infer(c, {
    model: pkg().id,
    inputs: exampleSamples(pkg(), 'iris-int8'),
    maxPrice: 5000n,
    hedgeAfterMs: false,
    ...over,
  });

/** The signed request `infer` would send to `to`, for calling the transport directly. */
async function request(c: Client, to: TestProvider) {
  const inputs = { features: { dtype: 'uint8' as const, shape: [1, 4], data: [50, 30, 14, 2] } };
  const head = {
    requestId: toHex(crypto.getRandomValues(new Uint8Array(32))),
    model: pkg().id,
    client: c.address,
    maxPrice: '5000',
  };
  const inputHash = hashTensors(inputsFromJson(pkg().manifest.inputs, inputs));
  const signature = await signRequest(c.account, requestMessage(head, { provider: to.address, inputHash }), {
    chainId: c.chainId,
    verifyingContract: c.deployment.contracts.receiptLedger,
  });
  return { ...head, inputs, signature };
}

const ref = (p: TestProvider) => ({ address: p.address, endpoint: p.url });

describe('provider answers are validated', () => {
  it('a malformed answer is PROVIDER_ERROR naming the field; infer fails over to the next provider', async () => {
    const bad = await network().startProvider({
      account: 1,
      price: 1000n,
      stake: 5n * MIN_STAKE, // ranked first
      faults: {
        answer: (a) => ({ ...a, receipt: { ...a.receipt, signature: 'not hex' } }),
      },
    });
    const good = await network().startProvider({ account: 2, price: 1000n });
    const c = await newClient();

    const error = await failure(postInfer(c, ref(bad), await request(c, bad)));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.field).toBe('response.receipt.signature');
    expect(error.shortMessage).toBe(
      `provider ${bad.address} answered a malformed body: response.receipt.signature: is not 0x-hex`,
    );

    const result = await run(c);
    expect(result.providers).toEqual([good.address]);
    expect(result.report.rejected).toEqual([
      expect.objectContaining({
        provider: bad.address,
        code: 'PROVIDER_ERROR',
        message: expect.stringContaining('response.receipt.signature'),
      }),
    ]);
  });

  it('an answer missing a field is PROVIDER_ERROR naming it; infer fails over', async () => {
    const bad = await network().startProvider({
      account: 1,
      price: 1000n,
      stake: 5n * MIN_STAKE, // ranked first
      faults: { answer: ({ receipt: _receipt, ...rest }) => rest },
    });
    const good = await network().startProvider({ account: 2, price: 1000n });
    const c = await newClient();

    const error = await failure(postInfer(c, ref(bad), await request(c, bad)));
    expect(error.code).toBe('PROVIDER_ERROR');
    expect(error.field).toBe('response.receipt');

    const result = await run(c);
    expect(result.providers).toEqual([good.address]);
    expect(result.report.rejected).toEqual([
      expect.objectContaining({
        provider: bad.address,
        code: 'PROVIDER_ERROR',
        message: expect.stringContaining('response.receipt: '),
      }),
    ]);
  });

  it('an answer over maxResponseBytes is RESPONSE_TOO_LARGE; infer fails over', async () => {
    const big = await network().startProvider({
      account: 1,
      price: 1000n,
      stake: 5n * MIN_STAKE,
      faults: { answer: (a) => ({ ...a, padding: 'x'.repeat(256 * 1024) }) },
    });
    const good = await network().startProvider({ account: 2, price: 1000n });
    const c = await newClient({ maxResponseBytes: 64 * 1024 });

    const error = await failure(postInfer(c, ref(big), await request(c, big)));
    expect(error.code).toBe('RESPONSE_TOO_LARGE');
    expect(error.field).toBe('body');
    expect(error.shortMessage).toMatch(new RegExp(`^provider ${big.address} answered more than 65536 bytes`));

    const result = await run(c);
    expect(result.providers).toEqual([good.address]);
    expect(result.report.rejected).toEqual([
      expect.objectContaining({ provider: big.address, code: 'RESPONSE_TOO_LARGE' }),
    ]);
    // the same answer within a larger cap is only extra fields: accepted
    const roomy = await newClient({ maxResponseBytes: 1024 * 1024 });
    expect((await run(roomy)).providers).toEqual([big.address]);
  });

  it('refuses a maxResponseBytes that is not a positive whole number', async () => {
    const error = await failure(newClient({ maxResponseBytes: 0 }));
    expect(error.code).toBe('USAGE');
    expect(error.field).toBe('maxResponseBytes');
  });
});

describe('a provider that serves garbage on its other routes', () => {
  let server: Server | undefined;
  afterEach(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  /** A server that answers `body` (JSON) to every request, as a broken or hostile provider would. */
  async function serve(body: unknown): Promise<string> {
    if (server) await new Promise((resolve) => server!.close(resolve));
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('/v1/models and /v1/vouchers: PROVIDER_ERROR naming the field', async () => {
    const c = await newClient();
    const address = network().chain.address(1);
    const models = {
      provider: address,
      signer: address,
      chainId: 1,
      runtime: '0x12',
      profile: {},
      models: [],
    };
    const bad = await failure(getModels(c, { address, endpoint: await serve(models) }));
    expect(bad.code).toBe('PROVIDER_ERROR');
    expect(bad.field).toBe('response.runtime');

    const voucher = {
      voucher: { client: c.address, provider: address, amount: 1n },
      signature: '0x00' as const,
    };
    const accepted = await failure(
      postVoucher(c, { address, endpoint: await serve({ amount: '1', owed: -1 }) }, voucher),
    );
    expect(accepted.code).toBe('PROVIDER_ERROR');
    expect(accepted.field).toBe('response.owed');
  });

  it('/v1/models naming another provider: its endpoint is stale (PROVIDER_UNAVAILABLE)', async () => {
    const c = await newClient();
    const [asked, other] = [network().chain.address(1), network().chain.address(2)];
    const runtime = network().engine.runtimeHash;
    const endpoint = await serve({
      provider: other,
      signer: other,
      chainId: 1,
      runtime,
      profile: {},
      models: [],
    });
    const error = await failure(getModels(c, { address: asked, endpoint }));
    expect(error.code).toBe('PROVIDER_UNAVAILABLE');
    expect(error.shortMessage).toBe(
      `provider ${asked} is not at its endpoint: ${endpoint} answers as ${other}`,
    );
  });
});
