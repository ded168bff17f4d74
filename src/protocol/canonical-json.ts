import canonicalizeModule from 'canonicalize';

// canonicalize is CommonJS whose typings declare an ES default export; the module itself is the function.
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined;

const utf8 = new TextEncoder();

/** The RFC 8785 (JCS) canonical JSON of a value: sorted keys, ES number forms, no whitespace. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return text;
}

export function canonicalJsonBytes(value: unknown): Uint8Array {
  return utf8.encode(canonicalJson(value));
}
