import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

/*
 * eslint.config.js forbids, under src/chain, the two ways around the ABI types: a cast to `never`
 * and an `unknown[]` argument list. These run ESLint's Node API with the project's config on
 * snippets at src/chain paths (nothing is written), so the rule is shown to fire, and to stay
 * scoped to src/chain.
 */

const eslint = new ESLint();

async function restricted(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-syntax').map((m) => m.message);
}

describe('the src/chain lint rule', () => {
  it('refuses `as never`', async () => {
    const found = await restricted(
      'export const call = (f: (x: string) => void, x: unknown) => f(x as never);\n',
      'src/chain/event-reader.ts',
    );
    expect(found).toEqual([expect.stringContaining('No `as never` in src/chain')]);
  });

  it('refuses `unknown[]`, `readonly unknown[]` and `Array<unknown>`', async () => {
    const found = await restricted(
      [
        'export type A = unknown[];',
        'export type B = readonly unknown[];',
        'export type C = ReadonlyArray<unknown>;',
        'export function send(functionName: string, args: readonly unknown[] = []) { return [functionName, args]; }',
        '',
      ].join('\n'),
      'src/chain/contracts.ts',
    );
    expect(found).toHaveLength(4);
    expect(found.filter((m) => m.includes('unknown[]'))).toHaveLength(3);
  });

  it('lets typed code through, and leaves other folders alone', async () => {
    expect(await restricted('export const ids: readonly bigint[] = [];\n', 'src/chain/disputes.ts')).toEqual(
      [],
    );
    expect(await restricted('export type A = unknown[];\n', 'src/node/db.ts')).toEqual([]);
  });
});
