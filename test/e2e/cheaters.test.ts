import { describe, expect, it } from 'vitest';
import { runCheatersScenario, scenarioHeld, scenarioTable } from '../scenarios/cheaters.js';

/*
 * Issue 5's acceptance scenario, smaller than `npm run scenario -- cheaters` so the suite stays
 * short: 150 requests to the cheater instead of 500 (about 30 wrong answers), so the verifiers
 * sample at 0.2 instead of the default 0.034 to catch it with probability 1 - 0.64^30 > 0.9999
 * rather than 0.87. 10 node processes, a real chain, real disputes.
 */
describe('the cheaters scenario', () => {
  it('slashes the cheater and the withholder, costs a rogue challenger its bond, and nobody honest pays', async () => {
    const result = await runCheatersScenario({ requests: 150, sampleRate: 0.2, timeoutMs: 300_000 });
    console.log(scenarioTable(result));
    expect(scenarioHeld(result)).toBe(true);
    expect(result.cheats).toBeGreaterThan(0);
    expect(result.cheatsDetected).toBeGreaterThan(0);
    expect(result.cheaterSlashed).toBe(true);
    expect(result.withholderSlashed).toBe(true);
    expect(result.rogueLostBond).toBe(true);
    // rejected on the merits: every member re-executed the honest receipt and agreed with it
    expect(result.rogueVotes.length).toBeGreaterThan(0);
    for (const why of result.rogueVotes) expect(why).toMatch(/agrees with the receipt/);
    expect(result.restartedMemberRevealed).toBe(true);
    expect(result.honestStakeLost).toBe(0n);
    // whatever redemptions took from the client into hold came back, and nothing reached the cheater
    expect(result.tokens['refunded to the client from hold']).toBe(
      result.tokens['taken from the client into hold by redemptions'],
    );
    expect(result.tokens['released to the cheater']).toBe(0n);
  }, 400_000);
});
