import { join } from 'node:path';
import { DEFAULT_OUT_DIR } from '../../examples/models/build.mjs';
import { randomBytes } from 'node:crypto';
import { formatUnits, getAddress, type Address, type Hex } from 'viem';
import {
  getChallenge,
  getChallengeCount,
  getEvents,
  getProvider,
  getVote,
  openChallenge,
  releaseHold,
  withAccount,
  type ChallengeInfo,
  type GlassboxClient,
} from '../../src/chain/index.js';
import { isSampled } from '../../src/node/roles/check.js';
import { STATUS_LIMIT_MAX } from '../../src/api/routes.js';
import type { NodeStatus } from '../../src/api/schemas.js';
import type { EvidenceResponse } from '../../src/protocol/api.js';
import { encodeTensors } from '../../src/protocol/encoding.js';
import { isGlassboxError } from '../../src/protocol/errors.js';
import { inputsFromJson } from '../../src/protocol/inputs.js';
import { signedReceiptToJson, type SignedReceipt } from '../../src/protocol/receipt.js';
import { defaultEngines } from '../../src/runtime/index.js';
import { faultyProvider } from '../support/faults.js';
import { charged, closeClient, infer, settle } from '../../src/sdk/index.js';
import { createFsStore, loadModel } from '../../src/store/index.js';
import { devnetClient, startDevnet, type Devnet, type DevnetProvider } from '../../src/devnet/index.js';

/*
 * `npm run scenario -- cheaters` (test/scenarios/run.ts): issue 5's acceptance run on a fresh devnet. Five providers (0
 * perturbs 20% of its answers, 1 serves nothing of its committed batches, 2-4 are honest), two verifiers and three
 * committee members. The client schedules `requests` receipt-mode requests for the cheater (the
 * worst case for a client: all its traffic at a cheating provider; once slashing takes the
 * cheater's stake below the minimum it drops out of discovery and the client routes around it)
 * and 10 for each other provider, and checks every answer against its own re-execution to count
 * the wrong ones. Then it waits for the network: the verifiers sample and challenge, the
 * committee votes, and the cheater and the withholder are slashed. On the way it kills one
 * committee member between its commit and its reveal (it must still reveal after a restart), and
 * a rogue challenger challenges an honest receipt with honest evidence (it must lose its bond).
 * It prints a table and returns the figures.
 */

export type ScenarioOptions = {
  readonly requests?: number;
  readonly perturb?: number;
  /** The verifiers' sampling rate (default: the economics default, from the chain's parameters). */
  readonly sampleRate?: number;
  readonly log?: (line: string) => void;
  /** Give up waiting for the network after this long. */
  readonly timeoutMs?: number;
};

export type ScenarioResult = {
  readonly requests: number;
  /** Requests the cheater answered before its stake fell below the minimum (then it drops out). */
  readonly cheaterServed: number;
  readonly cheats: number;
  readonly cheatsDetected: number;
  readonly cheaterSlashed: boolean;
  readonly withholderSlashed: boolean;
  readonly rogueLostBond: boolean;
  /** Why each committee member voted as it did on the rogue challenge. */
  readonly rogueVotes: readonly string[];
  readonly restartedMemberRevealed: boolean;
  readonly honestStakeLost: bigint;
  readonly cheatToSlashMs: number | undefined;
  /** Verifier re-executions per provider execution. */
  readonly reexecutionShare: number;
  /** Verifier re-execution time over the providers' run time (noisier: cold sessions, shared cores). */
  readonly computeShare: number;
  readonly predictedCatch: number;
  /** The same probability, measured on the real sampling draw over 2,000 simulated windows. */
  readonly simulatedCatch: number;
  readonly sampleRate: number;
  readonly tokens: Readonly<Record<string, bigint>>;
};

const PARAMS = {
  committeeSize: 3,
  commitPeriodMs: 20_000,
  revealPeriodMs: 20_000,
  answerPeriodMs: 15_000,
  paymentHoldMs: 10 * 60_000,
};

export async function runCheatersScenario(options: ScenarioOptions = {}): Promise<ScenarioResult> {
  const log = options.log ?? (() => undefined);
  const requests = options.requests ?? 500;
  const deadline = Date.now() + (options.timeoutMs ?? 240_000);
  const devnet = await startDevnet({
    providers: 5,
    verifiers: 2,
    committee: 3,
    params: PARAMS,
    // the tensor examples only: ten nodes loading the devnet's LLM too would only slow the start
    models: ['iris', 'iris-int8', 'cnn'].map((m) => join(DEFAULT_OUT_DIR, m)),
    provider: (i) =>
      i === 0
        ? faultyProvider({ perturb: options.perturb ?? 0.2 })
        : i === 1
          ? faultyProvider({ withhold: 'batches' })
          : {},
    nodeConfig: { batch: { maxReceipts: 64, maxAgeMs: 1000 }, redeemIntervalMs: 3000, logLevel: 'error' },
    // the rogue challenger's own account: a node's would race that node for its nonces
    spareAccounts: 1,
    roleConfig: {
      verifier: {
        dataDeadlineMs: 4000,
        pollIntervalMs: 300,
        ...(options.sampleRate === undefined ? {} : { sampleRate: options.sampleRate }),
      },
    },
    log,
  });
  try {
    return await play(devnet, requests, deadline, log);
  } finally {
    await devnet.stop();
  }
}

async function play(
  devnet: Devnet,
  requests: number,
  deadline: number,
  log: (line: string) => void,
): Promise<ScenarioResult> {
  const [cheater, withholder, ...honest] = devnet.providers as DevnetProvider[];
  const client = await devnetClient(devnet, { pollingIntervalMs: 50 });
  const chain = client.chain;
  const model = devnet.models.find((m) => m.name === 'iris-int8')!;
  const pkg = await loadModel(createFsStore(join(devnet.dir, 'store')), model.id);
  const engines = defaultEngines();
  const engine = engines.for(pkg, { trace: true });
  const stakeOf = async (a: Address) => {
    const p = await getProvider(chain, a);
    return p.stake + p.unbonding;
  };
  const stakeBefore = new Map<Address, bigint>();
  for (const p of [...devnet.providers, ...devnet.committee])
    stakeBefore.set(p.address, await stakeOf(p.address));

  // ---- the load: every answer checked against our own re-execution ----
  const everyone = devnet.providers.map((p) => p.address);
  const schedule = [
    ...Array.from({ length: requests }, () => cheater!),
    ...[withholder!, ...honest].flatMap((p) => Array.from({ length: 10 }, () => p)),
  ];
  let cheats = 0;
  let firstCheatAt: number | undefined;
  let honest0: { receipt: SignedReceipt; question: ReturnType<typeof featuresOf> } | undefined;
  let providerComputeMs = 0;
  const served = new Map<Address, number>();
  for (const [i, target] of schedule.entries()) {
    const json = featuresOf(i);
    const ask = (exclude: Address[]) =>
      infer(client, {
        model: model.id,
        inputs: json,
        mode: 'receipt',
        maxPrice: 10n ** 16n,
        trace: true,
        exclude,
      });
    // Each request goes to its scheduled provider while that one is active; a cheater slashed
    // below the minimum stake drops out of discovery, and the client routes around it.
    const answer = await ask(everyone.filter((a) => a !== target.address)).catch((error: unknown) => {
      if (isGlassboxError(error, 'PROVIDER_UNAVAILABLE')) return ask([]);
      throw error;
    });
    const servedBy = answer.receipts[0]!.receipt.provider;
    served.set(servedBy, (served.get(servedBy) ?? 0) + 1);
    const reference = await engine.run(pkg, inputsFromJson(pkg.manifest.inputs, json), { trace: true });
    providerComputeMs += reference.durationMs; // the provider ran the same traced model once
    if (reference.outputHash !== answer.receipts[0]!.receipt.outputHash) {
      cheats++;
      firstCheatAt ??= Date.now();
    }
    if (target === honest[0] && servedBy === target.address)
      honest0 ??= { receipt: answer.receipts[0]!, question: json };
    if ((i + 1) % 100 === 0) log(`  ${i + 1}/${schedule.length} requests, ${cheats} wrong answers so far`);
  }
  await settle(client);
  log(`load done: ${schedule.length} requests, ${cheats} wrong answers (each checked against our own run)`);
  const cheaterServed = served.get(cheater!.address) ?? 0;

  // ---- a rogue challenger: an honest receipt, honest evidence, a false claim ----
  // honest evidence (the receipt and the very inputs it answered), with a false claim
  const evidence: EvidenceResponse = {
    receipt: signedReceiptToJson(honest0!.receipt),
    inputs: Buffer.from(encodeTensors(inputsFromJson(pkg.manifest.inputs, honest0!.question))).toString(
      'base64',
    ),
  };
  const rogueChain = withAccount(chain, devnet.spare[0]!.privateKey);
  const rogueChallenge = await openChallenge(rogueChain, {
    ...honest0!.receipt,
    inputsUri: `data:application/json;base64,${Buffer.from(JSON.stringify(evidence)).toString('base64')}`,
  });
  log(`rogue challenge ${rogueChallenge.challengeId} opened against honest provider ${honest[0]!.address}`);

  // ---- wait for the network, killing one committee member between its commit and its reveal ----
  let killed: { member: DevnetProvider; challengeId: bigint } | undefined;
  const outcome = async () => {
    const count = await getChallengeCount(chain);
    const all: ChallengeInfo[] = [];
    for (let id = 0n; id < count; id++) all.push(await getChallenge(chain, id));
    return all;
  };
  let challenges = await outcome();
  const done = () =>
    challenges.some((c) => c.provider === cheater!.address && c.status === 'upheld') &&
    challenges.some((c) => c.provider === withholder!.address && c.status === 'upheld') &&
    challenges.every((c) => c.status !== 'open');
  while (!done()) {
    if (Date.now() > deadline) throw new Error('the scenario timed out waiting for challenges to settle');
    if (!killed) killed = await killBetweenCommitAndReveal(devnet, chain, log);
    await new Promise((r) => setTimeout(r, 200));
    challenges = await outcome();
  }
  const restartedMemberRevealed = killed
    ? (await getVote(chain, { challengeId: killed.challengeId, member: killed.member.address })).revealed
    : false;

  // ---- what it cost and who paid ----
  const statuses = await Promise.all(devnet.verifiers.map((v) => nodeStatus(v.url)));
  const detected = statuses.flatMap((s) =>
    (s.verifier?.samples ?? []).filter((x) => x.provider === cheater!.address && x.outcome === 'mismatch'),
  );
  const verifierComputeMs = statuses.reduce((t, s) => t + (s.verifier?.computeMs ?? 0), 0);
  const reexecutions = statuses.reduce(
    (t, s) => t + (s.verifier ? s.verifier.outcomes.match + s.verifier.outcomes.mismatch : 0),
    0,
  );
  const owed = (await charged(client))[cheater!.address]?.charged ?? 0n;
  const resolved = await getEvents(chain, {
    contract: 'disputeManager',
    eventName: 'ChallengeResolved',
  });
  const sum = (pick: (c: ChallengeInfo) => boolean, field: 'slashed' | 'reward') =>
    resolved.filter((e) => pick(challenges[Number(e.args.id)]!)).reduce((t, e) => t + e.args[field], 0n);
  const firstSlash = resolved.find((e) => {
    const c = challenges[Number(e.args.id)]!;
    return c.provider === cheater!.address && c.status === 'upheld';
  });
  const slashedAt = firstSlash
    ? Number((await chain.publicClient.getBlock({ blockNumber: firstSlash.blockNumber })).timestamp) * 1000
    : undefined;
  // the client's payments to the cheater come back: the conviction voids its held redemptions
  await releaseHold(chain, { client: client.address, provider: cheater!.address }).catch(() => undefined);
  const released = await getEvents(chain, {
    contract: 'paymentEscrow',
    eventName: 'Released',
    args: { client: client.address, provider: cheater!.address },
  });
  const refunded = await getEvents(chain, {
    contract: 'paymentEscrow',
    eventName: 'Refunded',
    args: { client: client.address, provider: cheater!.address },
  });
  const redeemed = await getEvents(chain, {
    contract: 'paymentEscrow',
    eventName: 'Redeemed',
    args: { client: client.address, provider: cheater!.address },
  });
  let honestStakeLost = 0n;
  for (const p of [...honest, ...devnet.committee])
    honestStakeLost += stakeBefore.get(p.address)! - (await stakeOf(p.address));
  // the rate the verifiers ran with: the economics default unless the scenario set one
  const sampleRate = statuses[0]!.verifier!.sampleRate;
  const q = 1 - Math.pow(1 - sampleRate, devnet.verifiers.length);
  const cheaterCase = (c: ChallengeInfo) => c.provider === cheater!.address;
  const withholderCase = (c: ChallengeInfo) => c.provider === withholder!.address;
  await closeClient(client);
  await engines.close();
  return {
    requests: schedule.length,
    cheaterServed,
    cheats,
    cheatsDetected: new Set(detected.map((d) => d.receiptHash)).size,
    cheaterSlashed: challenges.some((c) => cheaterCase(c) && c.status === 'upheld'),
    withholderSlashed: challenges.some(
      (c) => withholderCase(c) && c.kind !== 'wrong' && c.status === 'upheld',
    ),
    rogueLostBond: challenges[Number(rogueChallenge.challengeId)]!.status === 'rejected',
    rogueVotes: (await Promise.all(devnet.committee.map((m) => nodeStatus(m.url))))
      .flatMap((st) => st.committee?.duties ?? [])
      .filter((d) => d.challengeId === rogueChallenge.challengeId.toString())
      .map((d) => d.detail ?? ''),
    restartedMemberRevealed,
    honestStakeLost,
    cheatToSlashMs:
      firstCheatAt === undefined || slashedAt === undefined ? undefined : slashedAt - firstCheatAt,
    reexecutionShare: reexecutions / schedule.length,
    computeShare: providerComputeMs === 0 ? 0 : verifierComputeMs / providerComputeMs,
    predictedCatch: 1 - Math.pow(1 - q, cheats),
    simulatedCatch: simulateCatchRate({
      sampleRate,
      verifiers: devnet.verifiers.length,
      cheats,
      windows: 2000,
    }),
    sampleRate,
    tokens: {
      'slashed from the cheater': sum(cheaterCase, 'slashed'),
      'rewarded to its challengers': sum(cheaterCase, 'reward'),
      'slashed from the withholder': sum(withholderCase, 'slashed'),
      'bond lost by the rogue challenger': challenges[Number(rogueChallenge.challengeId)]!.bond,
      "the client's vouchers to the cheater": owed,
      'taken from the client into hold by redemptions': redeemed.reduce(
        (t, e) => t + (e.args.refunded ? 0n : e.args.paid),
        0n,
      ),
      'redemptions voided by the conviction (never taken)': redeemed.reduce(
        (t, e) => t + (e.args.refunded ? e.args.paid : 0n),
        0n,
      ),
      'refunded to the client from hold': refunded.reduce((t, e) => t + e.args.amount, 0n),
      'released to the cheater': released.reduce((t, e) => t + e.args.amount, 0n),
    },
  };
}

/**
 * The sampling rule itself, over many simulated challenge windows: the share of windows in which
 * at least one of a cheater's `cheats` receipts is drawn by at least one of the `verifiers`
 * (random block and receipt hashes through the verifiers' real `isSampled`).
 */
export function simulateCatchRate(params: {
  sampleRate: number;
  verifiers: number;
  cheats: number;
  windows: number;
}): number {
  const hex = (): Hex => `0x${randomBytes(32).toString('hex')}`;
  const verifiers = Array.from({ length: params.verifiers }, () => getAddress(hex().slice(0, 42)));
  let caught = 0;
  for (let w = 0; w < params.windows; w++) {
    const blockHash = hex();
    for (let i = 0; i < params.cheats; i++) {
      const receiptHash = hex();
      if (
        verifiers.some((verifier) => isSampled({ blockHash, receiptHash, verifier, p: params.sampleRate }))
      ) {
        caught++;
        break;
      }
    }
  }
  return caught / params.windows;
}

/** The scenario's i-th question: iris measurements in millimetres, varied. */
function featuresOf(i: number) {
  return { features: [[40 + (i % 40), 20 + (i % 25), 10 + (i % 60), 1 + (i % 25)]] };
}

/** Waits for a committee member to commit on some challenge, SIGKILLs it before it reveals, restarts it. */
async function killBetweenCommitAndReveal(
  devnet: Devnet,
  chain: GlassboxClient,
  log: (line: string) => void,
): Promise<{ member: DevnetProvider; challengeId: bigint } | undefined> {
  for (const member of devnet.committee) {
    const status = await nodeStatus(member.url).catch(() => undefined);
    const duty = status?.committee?.duties.find((d) => d.committed && !d.revealed);
    if (!duty) continue;
    const challengeId = BigInt(duty.challengeId);
    if ((await getVote(chain, { challengeId, member: member.address })).revealed) continue;
    await member.kill('SIGKILL');
    log(
      `committee member ${member.address} killed after committing on challenge ${challengeId}, before revealing`,
    );
    await member.restart();
    log(`committee member ${member.address} restarted`);
    return { member, challengeId };
  }
  return undefined;
}

/** A node's status with as many of its samples as it lists (the scenario counts them). */
async function nodeStatus(url: string): Promise<NodeStatus> {
  const response = await fetch(`${url}/v1/status?limit=${STATUS_LIMIT_MAX}`, {
    signal: AbortSignal.timeout(5000),
  });
  return (await response.json()) as NodeStatus;
}

/** Whether every acceptance line held in this run. */
export function scenarioHeld(r: ScenarioResult): boolean {
  return (
    r.cheaterSlashed &&
    r.withholderSlashed &&
    r.rogueLostBond &&
    r.restartedMemberRevealed &&
    r.honestStakeLost === 0n &&
    r.tokens['released to the cheater'] === 0n &&
    r.tokens['refunded to the client from hold'] ===
      r.tokens['taken from the client into hold by redemptions']
  );
}

/** The scenario's result as the table the issue asks for. */
export function scenarioTable(r: ScenarioResult): string {
  const tokens = (v: bigint) => `${formatUnits(v, 18)} GBX`;
  const rows: [string, string][] = [
    ['requests (receipt mode)', String(r.requests)],
    ['requests answered by the cheater', String(r.cheaterServed)],
    ['wrong answers (cheats), checked by the client', String(r.cheats)],
    ['cheats detected by the verifiers', String(r.cheatsDetected)],
    ['cheater challenged and slashed', r.cheaterSlashed ? 'yes' : 'NO'],
    ['withholder challenged for unavailability and slashed', r.withholderSlashed ? 'yes' : 'NO'],
    ['rogue challenger of an honest receipt lost its bond', r.rogueLostBond ? 'yes' : 'NO'],
    ['committee member killed between commit and reveal revealed', r.restartedMemberRevealed ? 'yes' : 'NO'],
    ['stake lost by honest providers and committee members', tokens(r.honestStakeLost)],
    [
      'time from first cheat to slash',
      r.cheatToSlashMs === undefined ? '-' : `${(r.cheatToSlashMs / 1000).toFixed(1)} s`,
    ],
    ['sampling rate per verifier', r.sampleRate.toFixed(4)],
    ['P(cheater caught) for this many cheats: 1 - (1 - q)^cheats', r.predictedCatch.toFixed(5)],
    ['P(cheater caught), real draw over 2,000 simulated windows', r.simulatedCatch.toFixed(4)],
    ['verifier re-executions / provider executions', `${(r.reexecutionShare * 100).toFixed(1)} %`],
    ['verifier re-execution time / provider run time', `${(r.computeShare * 100).toFixed(1)} %`],
    ...Object.entries(r.tokens).map(([k, v]): [string, string] => [`tokens: ${k}`, tokens(v)]),
  ];
  return ['| figure | value |', '|---|---:|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
}
