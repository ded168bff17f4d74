import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { GlassboxError, parseWith } from '../protocol/index.js';

/** The pack options file of a model folder (either layout): name, version, policy… */
export const MODEL_FOLDER_OPTIONS = 'model.json';

/**
 * Reads a folder's pack options file at `path` with `schema`: none is no options; a file that is
 * not JSON, or not what the schema says, is MANIFEST_INVALID naming the file (and the field).
 */
export async function readFolderOptions<T extends z.ZodType>(path: string, schema: T): Promise<z.output<T>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      return parseWith(schema, {}, { code: 'MANIFEST_INVALID' });
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new GlassboxError('MANIFEST_INVALID', `${path} is not valid JSON`, {
      field: MODEL_FOLDER_OPTIONS,
      cause,
    });
  }
  return parseWith(schema, json, { code: 'MANIFEST_INVALID', root: MODEL_FOLDER_OPTIONS });
}
