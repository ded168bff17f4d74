import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getOffer, registerModel } from '../../src/chain/index.js';
import { adminTokenPath, startNode, type GlassboxNode } from '../../src/node/index.js';
import { ADMIN_OFFERS_PATH } from '../../src/protocol/admin.js';
import type { ModelsResponse } from '../../src/protocol/api.js';
import { offerModel, withdrawModel } from '../../src/sdk/index.js';
import { createFsStore, packModelFolder } from '../../src/store/index.js';
import { exampleDir } from '../support/examples.js';
import {
  nodeConfig,
  post,
  PRICE,
  PROVIDER,
  startTestChain,
  startTestNode,
  stopAll,
  tempDir,
  type TestChain,
} from './support.js';

/* The admin API: model offers added and removed on a running node, with the token, and only with it. */

let chain: TestChain;
let a: GlassboxNode;
let b: GlassboxNode | undefined;
let evil: Server;
let evilUrl: string;
let token: string;
const dirs: { dir: string; remove(): Promise<void> }[] = [];
const cnn = exampleDir('cnn');

beforeAll(async () => {
  chain = await startTestChain();
  for (let i = 0; i < 2; i++) dirs.push(await tempDir());
  // A serves cnn (and registers it on chain); B does not, until it is asked to.
  a = await startTestNode(chain, PROVIDER[0], dirs[0]!.dir, {
    models: [{ model: cnn, price: PRICE.toString() }],
  });
  // B's defaultInputPrice is for LLMs: a tensor model's input price stays 0.
  b = await startTestNode(chain, PROVIDER[1], dirs[1]!.dir, {
    defaultPrice: (3n * PRICE).toString(),
    defaultInputPrice: '7',
  });
  token = (await readFile(adminTokenPath(dirs[1]!.dir), 'utf8')).trim();
  // A blob source that answers every CID with the wrong bytes.
  evil = createServer((_req, res) => res.end('not the blob you asked for'));
  await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
  evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await stopAll([a, b]);
  await new Promise((r) => evil.close(r));
  await chain?.stop();
  for (const d of dirs) await d.remove();
});

const cnnId = () => [...a.models.keys()][0]!;
const offers = (node: GlassboxNode) =>
  fetch(`${node.url}/v1/models`)
    .then((r) => r.json() as Promise<ModelsResponse>)
    .then((m) => m.models.map((x) => x.id));

describe('admin API: authentication', () => {
  it('makes a 256-bit token readable by its owner only, on first start', async () => {
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect((await stat(adminTokenPath(dirs[1]!.dir))).mode & 0o077).toBe(0);
  });

  it('refuses a request without a token, or with a wrong one, before it reads the body', async () => {
    const none = await post(`${b!.url}${ADMIN_OFFERS_PATH}`, { model: cnnId() });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await none.json()).toMatchObject({ code: 'ADMIN_UNAUTHORIZED', message: /^no admin token/ });

    const wrong = await post(`${b!.url}${ADMIN_OFFERS_PATH}`, 'not even json', {
      authorization: `Bearer ${token.slice(0, -1)}${token.endsWith('0') ? '1' : '0'}`,
    });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ code: 'ADMIN_UNAUTHORIZED', message: /^wrong admin token/ });

    const basic = await post(`${b!.url}${ADMIN_OFFERS_PATH}`, { model: cnnId() }, { authorization: token });
    expect(basic.status).toBe(401);
    await expect(withdrawModel({ url: b!.url, token: 'x'.repeat(64), model: cnnId() })).rejects.toMatchObject(
      {
        code: 'ADMIN_UNAUTHORIZED',
      },
    );
    expect(await offers(b!)).not.toContain(cnnId());
  });

  it('names the offending field of a malformed body', async () => {
    const res = await post(
      `${b!.url}${ADMIN_OFFERS_PATH}`,
      { model: 'bafy-nope', price: '-1' },
      { authorization: `Bearer ${token}` },
    );
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'REQUEST_INVALID', field: 'body.model' });
  });
});

describe('admin API: adding an offer', () => {
  it('refuses a model that is not registered on chain', async () => {
    const store = createFsStore(join(dirs[1]!.dir, 'store'));
    const { id } = await packModelFolder(store, cnn, { name: 'cnn-unregistered' });
    await expect(offerModel({ url: b!.url, token, model: id })).rejects.toMatchObject({
      code: 'MODEL_NOT_FOUND',
      message: expect.stringMatching(/is not registered on chain/),
    });
  });

  it('refuses a model whose files no source serves intact, naming the corrupt blob', async () => {
    await expect(offerModel({ url: b!.url, token, model: cnnId(), from: [evilUrl] })).rejects.toMatchObject({
      code: 'BLOB_NOT_FOUND',
      message: expect.stringMatching(/is corrupt: its \d+ bytes hash to/),
    });
    expect(b!.models.has(cnnId())).toBe(false);
  });

  it("refuses a model registered with another exact flag than its manifest's policy", async () => {
    const { id } = await packModelFolder(createFsStore(join(dirs[1]!.dir, 'store')), cnn, {
      name: 'cnn-exact',
    });
    await registerModel(chain.as(0), { model: id, exact: true });
    await expect(offerModel({ url: b!.url, token, model: id })).rejects.toMatchObject({
      code: 'MODEL_REFUSED',
      message: expect.stringMatching(
        /registered on chain as exact .* but its manifest's policy is tolerance/,
      ),
    });
  });

  it('fetches the package from a source, verifies and loads it, offers it on chain and serves it at once', async () => {
    const added = await offerModel({ url: b!.url, token, model: cnnId(), from: [evilUrl, a.url] });
    expect(added).toMatchObject({
      model: cnnId(),
      name: 'cnn',
      price: (3n * PRICE).toString(), // the node's defaultPrice
      inputPrice: '0', // not the node's defaultInputPrice: cnn is a tensor model
      actions: [{ action: 'setOffer' }],
    });
    expect(await offers(b!)).toContain(cnnId());
    const offer = await getOffer(chain.as(0), { provider: b!.address, model: cnnId() });
    expect(offer).toMatchObject({ active: true, price: 3n * PRICE, inputPrice: 0n });
    // Asking again at the same price changes nothing on chain.
    expect((await offerModel({ url: b!.url, token, model: cnnId() })).actions).toEqual([]);
  });

  it('refuses an input price for a tensor model, naming the field, and leaves the chain as it was', async () => {
    await expect(
      offerModel({ url: b!.url, token, model: cnnId(), price: PRICE, inputPrice: 5n }),
    ).rejects.toMatchObject({
      code: 'REQUEST_INVALID',
      field: 'inputPrice',
      message: expect.stringMatching(/onnx models are priced per inference: the inputPrice must be 0, not 5/),
    });
    expect(await getOffer(chain.as(0), { provider: b!.address, model: cnnId() })).toMatchObject({
      active: true,
      price: 3n * PRICE,
      inputPrice: 0n,
      pending: undefined,
    });
  });

  it('keeps serving an added offer after a restart, without a transaction', async () => {
    const port = Number(new URL(b!.url).port);
    await b!.stop();
    b = await startTestNode(chain, PROVIDER[1], dirs[1]!.dir, { listen: { port } });
    expect(b.models.has(cnnId())).toBe(true);
    expect(b.actions).toEqual([]);
    expect(await offers(b)).toContain(cnnId());
  });

  it('withdraws an offer on chain, stops serving it, and forgets it across a restart', async () => {
    const removed = await withdrawModel({ url: b!.url, token, model: cnnId() });
    expect(removed.actions).toEqual([{ action: 'removeOffer', detail: cnnId() }]);
    expect(await offers(b!)).not.toContain(cnnId());
    expect((await getOffer(chain.as(0), { provider: b!.address, model: cnnId() })).active).toBe(false);
    await expect(withdrawModel({ url: b!.url, token, model: cnnId() })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await b!.stop();
    b = await startNode(nodeConfig(chain, PROVIDER[1], dirs[1]!.dir, { adminToken: 'y'.repeat(40) }));
    expect(b.models.has(cnnId())).toBe(false);
    // A configured token replaces the file's.
    await expect(offerModel({ url: b.url, token, model: cnnId() })).rejects.toMatchObject({
      code: 'ADMIN_UNAUTHORIZED',
    });
    expect(
      (await offerModel({ url: b.url, token: 'y'.repeat(40), model: cnnId(), price: PRICE })).price,
    ).toBe(PRICE.toString());
  });
});
