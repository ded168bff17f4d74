import { describe, expect, it } from 'vitest';
import { runCheatersScenario, scenarioTable } from '../../src/devnet/scenario.js';

/*
 * Issue 5's acceptance scenario, smaller than `npm run scenario -- cheaters` (150 requests to the
 * cheater instead of 500) so the suite stays short: 10 node processes, a real chain, real disputes.
 */
describe('the cheaters scenario', () => {
  it('slashes the cheater and the withholder, costs a rogue challenger its bond, and nobody honest pays', async () => {
    const result = await runCheatersScenario({ requests: 150, timeoutMs: 300_000 });
    console.log(scenarioTable(result));
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
    expect(result.clientPaidCheater).toBe(0n);
    expect(result.tokens['refunded to the client']).toBe(
      result.tokens['client paid to the cheater (redeemed into hold)'],
    );
  }, 400_000);
});
