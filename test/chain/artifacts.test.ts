import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHALLENGE_KIND, CHALLENGE_STATUS, DisputeManagerEnums } from '../../src/chain/index.js';

/*
 * The contracts' enums reach TypeScript only through scripts/compile-contracts.mjs, which reads
 * them from the solc AST; src/chain names their members but takes the order from there. Read
 * here from the Solidity source itself, so a generator that lost or reordered a member fails.
 */

const source = readFileSync(join(import.meta.dirname, '../../contracts/DisputeManager.sol'), 'utf8');

function solidityEnum(name: string): string[] {
  const body = new RegExp(`enum ${name} \\{([^}]*)\\}`).exec(source)?.[1];
  if (body === undefined) throw new Error(`no enum ${name} in DisputeManager.sol`);
  return body
    .replace(/\/\/[^\n]*/g, '') // NatSpec and comments between members
    .split(',')
    .map((m) => m.trim())
    .filter((m) => m.length > 0);
}

describe('generated contract enums', () => {
  it("DisputeManager's Kind and Status, in declaration order", () => {
    expect(DisputeManagerEnums.Kind).toEqual(solidityEnum('Kind'));
    expect(DisputeManagerEnums.Status).toEqual(solidityEnum('Status'));
  });

  it('CHALLENGE_STATUS and CHALLENGE_KIND follow that order (index = the uint8 on chain)', () => {
    expect(CHALLENGE_STATUS).toEqual(['none', 'open', 'upheld', 'rejected', 'void', 'answered']);
    expect(CHALLENGE_KIND).toEqual(['wrong', 'unavailable', 'unavailable-batch']);
    expect(CHALLENGE_STATUS).toHaveLength(solidityEnum('Status').length);
    expect(CHALLENGE_KIND).toHaveLength(solidityEnum('Kind').length);
  });
});
