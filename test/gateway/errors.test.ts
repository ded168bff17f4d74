import { describe, expect, it } from 'vitest';
import { openAiError } from '../../src/api/openai-answer.js';
import { explainFailure, gatewayStatus } from '../../src/gateway/errors.js';
import { GlassboxError } from '../../src/protocol/errors.js';

/*
 * What the gateway answers for the SDK's failures (src/gateway/errors.ts), on the errors the SDK
 * throws (src/sdk/chat.ts): the status, and a message that names each provider and why it failed,
 * since OpenAI's error body has no other place for it. The live paths (a price cap, a quorum
 * stream, bad fields, an unknown model) are in openai.test.ts against real providers.
 */

const A = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
const B = '0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC';

const answered = (error: GlassboxError) => {
  const explained = explainFailure(error) as GlassboxError;
  const status = gatewayStatus(explained);
  return { status, body: openAiError(explained, status).error };
};

describe('the gateway: SDK failures as OpenAI errors', () => {
  it('no provider could answer: 503 server_error, each provider named with its reason', () => {
    const { status, body } = answered(
      new GlassboxError('PROVIDER_UNAVAILABLE', 'no provider of model m answered (2 tried)', {
        metaMessages: [`${A}: PROVIDER_ERROR: 500 boom`, `${B}: PROVIDER_TIMEOUT: no first token in 1000 ms`],
        details: { rejected: [] },
      }),
    );
    expect(status).toBe(503);
    expect(body.type).toBe('server_error');
    expect(body.code).toBe('provider_unavailable');
    expect(body.message).toBe(
      `no provider of model m answered (2 tried) [${A}: PROVIDER_ERROR: 500 boom; ${B}: PROVIDER_TIMEOUT: no first token in 1000 ms]`,
    );
  });

  it('answers that came back and failed verification, or no majority: 502; a time limit: 504', () => {
    expect(answered(new GlassboxError('VERIFICATION_FAILED', 'no generation verified')).status).toBe(502);
    expect(answered(new GlassboxError('QUORUM_NO_MAJORITY', 'split 1/1')).status).toBe(502);
    expect(answered(new GlassboxError('PROVIDER_TIMEOUT', 'too slow')).status).toBe(504);
  });

  it("the gateway's own settings are no param of the client's request; the request's fields are", () => {
    const cap = answered(new GlassboxError('PRICE_TOO_HIGH', 'over the cap', { field: 'maxPrice' }));
    expect(cap).toMatchObject({ status: 503, body: { param: null } });
    const quorum = answered(new GlassboxError('REQUEST_INVALID', 'mode: quorum', { field: 'mode' }));
    expect(quorum).toMatchObject({ status: 400, body: { param: null } });
    const context = answered(
      new GlassboxError('REQUEST_INVALID', 'messages: over the context', { field: 'messages' }),
    );
    expect(context).toMatchObject({
      status: 400,
      body: { param: 'messages', type: 'invalid_request_error' },
    });
  });

  it('a model the network does not know: 404 model_not_found naming the model field', () => {
    const { status, body } = answered(new GlassboxError('MODEL_NOT_FOUND', 'no LLM model x on chain'));
    expect(status).toBe(404);
    expect(body).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it('what is not a GlassboxError passes as it is (the error handler makes it a 500)', () => {
    const error = new Error('bug');
    expect(explainFailure(error)).toBe(error);
  });
});
