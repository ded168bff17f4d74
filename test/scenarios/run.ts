import { parseArgs } from 'node:util';
import { runCheatersScenario, scenarioHeld, scenarioTable } from './cheaters.js';
import { runSubstitutionScenario, substitutionHeld, substitutionTable } from './substitution.js';

/*
 * `npm run scenario -- <name> [--requests N] [--runs N]`: an acceptance scenario on a fresh devnet,
 * printed as its table, run as many times as asked; exits non-zero unless it held every time.
 * A new scenario is one file here and one entry in SCENARIOS.
 */

type Scenario = (options: {
  requests?: number;
  log: (line: string) => void;
}) => Promise<{ table: string; held: boolean }>;

const SCENARIOS: Record<string, Scenario> = {
  cheaters: async (options) => {
    const result = await runCheatersScenario(options);
    return { table: scenarioTable(result), held: scenarioHeld(result) };
  },
  substitution: async (options) => {
    const result = await runSubstitutionScenario(options);
    return { table: substitutionTable(result), held: substitutionHeld(result) };
  },
};

const usage = `usage: npm run scenario -- <${Object.keys(SCENARIOS).join('|')}> [--requests N] [--runs N]`;

function usageError(message: string): never {
  console.error(`${message}\n${usage}`);
  process.exit(2);
}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) usageError(`${flag} must be a positive integer, not ${value}`);
  return n;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { requests: { type: 'string' }, runs: { type: 'string' } },
});
const [name] = positionals;
if (name === undefined) usageError('name a scenario');
const scenario = SCENARIOS[name] ?? usageError(`unknown scenario ${name}`);
const requests = positiveInt(values.requests, '--requests');
const runs = positiveInt(values.runs, '--runs') ?? 1;
let held = 0;
for (let run = 1; run <= runs; run++) {
  if (runs > 1) console.log(`\nrun ${run} of ${runs}`);
  const log = (line: string) => console.log(line);
  const result = await scenario({ ...(requests === undefined ? {} : { requests }), log });
  console.log(`\n${result.table}`);
  if (result.held) held++;
}
if (runs > 1) console.log(`\nthe scenario held in ${held} of ${runs} runs`);
if (held < runs) {
  console.error('the scenario did not hold; see the table');
  process.exit(1);
}
