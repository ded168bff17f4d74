import type { FastifyInstance } from 'fastify';
import { routes } from '../../api/routes.js';
import type { ServedModel } from '../../protocol/api.js';
import { isGlassboxError } from '../../protocol/errors.js';
import type { NodeContext } from '../context.js';
import type { OfferPrices } from '../prices.js';
import { openAiModel } from './openai.js';
import { serve } from '../../api/serve.js';

/**
 * GET /v1/models: what this provider serves, at its effective on-chain prices, under which runtime;
 * the same list as OpenAI's (`object: "list"`, `data`), so that one answer serves both clients.
 */
export async function modelsRoutes(app: FastifyInstance, { ctx }: { ctx: NodeContext }): Promise<void> {
  serve(app, routes.models, async () => {
    const models: ServedModel[] = [];
    for (const pkg of ctx.models.values()) {
      let prices: OfferPrices;
      try {
        prices = await ctx.prices.price(pkg.id);
      } catch (error) {
        if (isGlassboxError(error, 'NOT_FOUND')) continue; // not offered (yet): not served
        throw error;
      }
      const m = pkg.manifest;
      const runtime = ctx.runtimeOf(pkg);
      models.push({
        id: pkg.id,
        name: m.name,
        version: m.version,
        inputs: m.inputs,
        outputs: m.outputs,
        policy: m.policy,
        price: prices.price.toString(),
        inputPrice: prices.inputPrice.toString(),
        ...(runtime === ctx.engine.runtimeHash ? {} : { runtime }),
      });
    }
    return {
      provider: ctx.provider,
      signer: ctx.signer,
      chainId: ctx.chainId,
      runtime: ctx.engine.runtimeHash,
      profile: ctx.engine.profile,
      models,
      object: 'list' as const,
      // OpenAI's list holds what its routes answer: the LLMs.
      data: models
        .filter((m) => ctx.models.get(m.id)?.manifest.format === 'llm')
        .map((m) => openAiModel(ctx, m.id, m.name)),
    };
  });
}
