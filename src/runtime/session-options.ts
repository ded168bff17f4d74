import type ort from 'onnxruntime-node';

/**
 * The onnxruntime session options both engines run under: CPU, the profile's optimisation level,
 * sequential execution. Threads are not part of a profile (onnxruntime's CPU kernels give the same
 * bits on any count). onnxruntime's own log lines (warnings, and errors we rethrow with their
 * message) would land raw on the user's terminal before our error; logging changes no output bit.
 */
export function cpuSessionOptions(
  graphOptimizationLevel: ort.InferenceSession.SessionOptions['graphOptimizationLevel'],
  intraOpNumThreads: number | undefined,
): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel,
    executionMode: 'sequential',
    interOpNumThreads: 1,
    logSeverityLevel: 4,
    ...(intraOpNumThreads === undefined ? {} : { intraOpNumThreads }),
  };
}
