import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The node's Prometheus metrics, in a registry of its own (several nodes may share a process). */
export type NodeMetrics = {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly latency: Histogram<'route'>;
  readonly inference: Histogram<'model'>;
  readonly receipts: Counter<'model'>;
  readonly batches: Counter;
  readonly batchedReceipts: Counter;
  readonly openReceipts: Gauge;
  readonly redeemed: Counter;
};

export function createNodeMetrics(defaults = true): NodeMetrics {
  const registry = new Registry();
  if (defaults) collectDefaultMetrics({ register: registry, prefix: 'glassbox_node_' });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'glassbox_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    latency: new Histogram({
      name: 'glassbox_http_request_duration_seconds',
      help: 'HTTP request latency, by route',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    inference: new Histogram({
      name: 'glassbox_inference_duration_seconds',
      help: 'model run time, by model',
      labelNames: ['model'],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    }),
    receipts: new Counter({
      name: 'glassbox_receipts_total',
      help: 'receipts signed and persisted, by model',
      labelNames: ['model'],
      registers,
    }),
    batches: new Counter({ name: 'glassbox_batches_total', help: 'batches committed on chain', registers }),
    batchedReceipts: new Counter({
      name: 'glassbox_batched_receipts_total',
      help: 'receipts in batches committed on chain',
      registers,
    }),
    openReceipts: new Gauge({
      name: 'glassbox_open_receipts',
      help: 'receipts waiting for a batch',
      registers,
    }),
    redeemed: new Counter({
      name: 'glassbox_redeemed_base_units_total',
      help: 'token base units redeemed from vouchers (as a float; exact amounts are in the database)',
      registers,
    }),
  };
}
