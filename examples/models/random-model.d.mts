/** Types of random-model.mjs (a float MLP with random weights). */
export declare function randomMlpOnnx(seed: number): Uint8Array;
