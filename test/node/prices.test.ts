import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openNodeDb } from '../../src/node/db.js';
import { answerPriceBound, offerPrices, tokenPricesOf } from '../../src/node/prices.js';
import { tokenPrice } from '../../src/protocol/llm.js';
import type { ModelId, ModelPackage } from '../../src/protocol/manifest.js';
import { tempDir } from '../store/temp-dir.js';

/*
 * The pair a node offers a model at (src/node/prices.ts `offerPrices`): an LLM is priced per token,
 * output and input; a tensor model per inference, its input price 0 whatever the node's defaults.
 * The chain side of the pair is test/chain/providers.test.ts; the admin API's, test/node/admin.test.ts.
 */

const DEFAULTS = { price: 1000n, inputPrice: 250n };

describe('offerPrices', () => {
  it("prices an LLM per token: what was asked, else the node's defaults, else an input price of 0", () => {
    expect(offerPrices('llm', { price: 40n, inputPrice: 10n }, DEFAULTS)).toEqual({
      ok: true,
      prices: { price: 40n, inputPrice: 10n },
    });
    expect(offerPrices('llm', { price: 40n }, DEFAULTS)).toEqual({
      ok: true,
      prices: { price: 40n, inputPrice: 250n },
    });
    expect(offerPrices('llm', {}, { price: 1000n })).toEqual({
      ok: true,
      prices: { price: 1000n, inputPrice: 0n },
    });
    // an asked 0 is a price (free prompts), not "use the default"
    expect(offerPrices('llm', { inputPrice: 0n }, DEFAULTS)).toMatchObject({ prices: { inputPrice: 0n } });
  });

  it("prices a tensor model per inference: the node's defaultInputPrice never applies to it", () => {
    expect(offerPrices('onnx', {}, DEFAULTS)).toEqual({ ok: true, prices: { price: 1000n, inputPrice: 0n } });
    expect(offerPrices('onnx', { price: 5n, inputPrice: 0n }, DEFAULTS)).toEqual({
      ok: true,
      prices: { price: 5n, inputPrice: 0n },
    });
  });

  it('names the field: a missing price, or an input price for a tensor model', () => {
    expect(offerPrices('llm', { inputPrice: 1n }, {})).toMatchObject({
      ok: false,
      field: 'price',
      message: expect.stringMatching(/no defaultPrice/),
    });
    expect(offerPrices('onnx', { price: 5n, inputPrice: 1n }, DEFAULTS)).toEqual({
      ok: false,
      field: 'inputPrice',
      message: 'onnx models are priced per inference: the inputPrice must be 0, not 1',
    });
  });
});

describe('answerPriceBound (the compute cost a verifier plans its sampling for)', () => {
  // Only the fields the bound reads: a whole package is not needed to say what one answer may cost.
  const tensor = { manifest: { format: 'onnx' } } as unknown as ModelPackage;
  const llm = { manifest: { format: 'llm', llm: { contextLength: 4096 } } } as unknown as ModelPackage;

  it("is a tensor model's price per answer", () => {
    expect(answerPriceBound(tensor, { price: 1000n, inputPrice: 0n })).toBe(1000n);
  });

  it("is an LLM's whole context at the dearer of its two per-token prices", () => {
    expect(answerPriceBound(llm, { price: 40n, inputPrice: 10n })).toBe(40n * 4096n);
    expect(answerPriceBound(llm, { price: 3n, inputPrice: 10n })).toBe(10n * 4096n);
  });
});

describe('tokenPricesOf', () => {
  it("charges a generation the offer's price per output token and inputPrice per prompt token", () => {
    const prices = tokenPricesOf({ price: 30n, inputPrice: 10n });
    expect(prices).toEqual({ inputPrice: 10n, outputPrice: 30n });
    expect(tokenPrice({ promptTokens: 9, completionTokens: 3 }, prices)).toBe(9n * 10n + 3n * 30n);
  });
});

describe('node database: offers added at run time', () => {
  const model = 'bafkreieppi6zqlcdxxh6abgrgxavwdzrfilprlvgzvuax3ip4xhhavsba4' as ModelId;
  const provider = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';

  it('keeps both prices of an offer, and reads an offer saved before input prices as 0', async () => {
    const path = join(await tempDir('glassbox-prices-'), 'node.sqlite');
    // a database written by a node from before per-token prices
    const old = new Database(path);
    old.exec('CREATE TABLE offers (model TEXT PRIMARY KEY, price TEXT NOT NULL, added_at INTEGER NOT NULL)');
    old.prepare('INSERT INTO offers VALUES (?, ?, ?)').run(model, '123', 1);
    old.close();

    const db = openNodeDb(path, provider);
    try {
      expect(db.addedOffers()).toEqual([{ model, price: 123n, inputPrice: 0n }]);
      db.saveOffer({ model, price: 40n, inputPrice: 10n }); // a repricing replaces both
      expect(db.addedOffers()).toEqual([{ model, price: 40n, inputPrice: 10n }]);
    } finally {
      db.close();
    }
  });
});
