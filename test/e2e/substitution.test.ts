import { describe, expect, it } from 'vitest';
import { runSubstitutionScenario, substitutionHeld, substitutionTable } from '../scenarios/substitution.js';

/*
 * Issue 14's substitution scenario, smaller than `npm run scenario -- substitution` so the suite
 * stays short: 12 chats of 16 tokens instead of 200, one verifier sampling every receipt (rate 1) instead of
 * two at the default rate, so that the impostor's first committed batch is re-checked for sure.
 * 9 node processes, a real chain, the real gateway, real disputes.
 */
describe('the substitution scenario', () => {
  it('convicts the provider that serves tiny-chat-int8 as tiny-chat, refunds the client, and nobody honest pays', async () => {
    const result = await runSubstitutionScenario({
      requests: 12,
      maxTokens: 16,
      verifiers: 1,
      sampleRate: 1,
      timeoutMs: 150_000,
    });
    console.log(substitutionTable(result));
    expect(result.clientErrors).toBe(0);
    // 8 of the 12 go through the gateway pinned to the impostor: the 8-bit model's answers
    expect(result.substituted).toBeGreaterThan(0);
    expect(result.substitutedFailingRecheck).toBeGreaterThan(0);
    expect(result.honestFailingRecheck).toBe(0);
    expect(result.recheckedCaught).toBeGreaterThan(0);
    expect(result.impostorSlashed).toBe(true);
    expect(result.tokens.slashed).toBeGreaterThan(0n);
    expect(result.honestStakeLost).toBe(0n);
    expect(result.honestPaymentsLost).toBe(0n);
    expect(result.tokens.impostor.released).toBe(0n);
    expect(result.tokens.impostor.refunded).toBe(result.tokens.impostor.takenIntoHold);
    expect(substitutionHeld(result)).toBe(true);
  }, 400_000);
});
