import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

/*
 * The module arrows of docs/architecture.md, enforced: each folder under src/ may import only the
 * folders listed for it. A new arrow is a design decision; make it here and in the document.
 */

const SRC = resolve(import.meta.dirname, '../src');

const MAY_IMPORT: Record<string, readonly string[]> = {
  protocol: [],
  api: ['protocol'],
  store: ['protocol'],
  runtime: ['protocol'],
  chain: ['protocol'],
  node: ['protocol', 'api', 'store', 'runtime', 'chain'],
  sdk: ['protocol', 'api', 'store', 'chain', 'runtime'],
  gateway: ['protocol', 'api', 'sdk'],
  devnet: ['protocol', 'api', 'store', 'runtime', 'chain', 'node', 'sdk', 'gateway'],
  cli: ['protocol', 'api', 'store', 'runtime', 'chain', 'node', 'sdk', 'devnet', 'gateway'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const moduleOf = (file: string): string => relative(SRC, file).split(sep)[0]!;

/** Relative specifiers of static imports, re-exports and dynamic imports. */
function relativeImports(source: string): string[] {
  const specifiers = [...source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.[^']*)'/g)];
  return specifiers.map((match) => match[1]!);
}

function arrows(): { from: string; to: string; file: string }[] {
  return sourceFiles(SRC).flatMap((file) =>
    relativeImports(readFileSync(file, 'utf8'))
      .map((specifier) => resolve(dirname(file), specifier))
      .filter((target) => target.startsWith(SRC + sep))
      .map((target) => ({ from: moduleOf(file), to: moduleOf(target), file: relative(SRC, file) }))
      .filter((arrow) => arrow.from !== arrow.to),
  );
}

describe('module layout', () => {
  it('every folder under src/ is a module with declared arrows', () => {
    const folders = readdirSync(SRC, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
    expect(folders.sort()).toEqual(Object.keys(MAY_IMPORT).sort());
  });

  it('imports point only along the declared arrows', () => {
    const found = arrows();
    // the scan sees imports at all: the CLI composes everything
    expect(found.some((a) => a.from === 'cli' && a.to === 'sdk')).toBe(true);
    const wrong = found
      .filter((arrow) => !MAY_IMPORT[arrow.from]!.includes(arrow.to))
      .map((arrow) => `${arrow.file} imports src/${arrow.to}`);
    expect(wrong).toEqual([]);
  });
});
