import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/*
 * The API module sits between the node and the SDK: both import it, so it imports neither (only
 * src/protocol), and the SDK still never imports the node, nor the node the SDK (DESIGN.md, Layout).
 */

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** The src folders each file of `folder` imports from (relative imports only). */
async function importedFolders(folder: string): Promise<Map<string, Set<string>>> {
  const found = new Map<string, Set<string>>();
  for (const entry of await readdir(join(SRC, folder), { recursive: true })) {
    if (!entry.endsWith('.ts')) continue;
    const file = join(SRC, folder, entry);
    const text = await readFile(file, 'utf8');
    for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = relative(SRC, join(file, '..', spec!)).split('/')[0]!;
      if (!found.has(target)) found.set(target, new Set());
      found.get(target)!.add(relative(SRC, file));
    }
  }
  return found;
}

describe('module boundaries of the API', () => {
  it('src/api imports only src/protocol', async () => {
    const folders = [...(await importedFolders('api')).keys()].filter((f) => f !== 'api');
    expect(folders).toEqual(['protocol']);
  });

  it('src/sdk never imports src/node, and src/node never imports src/sdk', async () => {
    expect((await importedFolders('sdk')).get('node')).toBeUndefined();
    expect((await importedFolders('node')).get('sdk')).toBeUndefined();
  });
});
