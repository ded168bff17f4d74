/**
 * A small seeded pseudo-random generator, so that every model built here is the same, bit for bit,
 * on every run and every machine. Only integer arithmetic (Math.imul, shifts) feeds the stream;
 * the conversions to floats are exact.
 */

/** @typedef {{ next(): number, normal(): number, shuffle<T>(items: T[]): T[] }} Random */

/**
 * mulberry32: a 32-bit state generator with a full 2^32 period; plenty for weights and splits.
 * @param {number} seed any 32-bit integer
 * @returns {Random}
 */
export function seededRandom(seed) {
  let state = seed >>> 0;
  /** @returns {number} a float in [0, 1) with 32 random bits */
  function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** @returns {number} a standard normal sample (Box-Muller) */
  function normal() {
    const u = 1 - next(); // (0, 1]: log(u) is finite
    const v = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /**
   * Fisher-Yates, in place.
   * @template T
   * @param {T[]} items
   * @returns {T[]} the same array
   */
  function shuffle(items) {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [items[i], items[j]] = [/** @type {T} */ (items[j]), /** @type {T} */ (items[i])];
    }
    return items;
  }
  return { next, normal, shuffle };
}
