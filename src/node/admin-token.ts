import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GlassboxError } from '../protocol/errors.js';

/*
 * The admin API's bearer token (src/node/routes/admin.ts). Unless the config names one, the node
 * makes a random 256-bit token on its first start and keeps it in `<dataDir>/admin-token`, readable
 * by its owner only: whoever can read the node's data dir is its operator already.
 */

export const ADMIN_TOKEN_FILE = 'admin-token';

export function adminTokenPath(dataDir: string): string {
  return join(dataDir, ADMIN_TOKEN_FILE);
}

/** The node's admin token: `configured`, else the one in its data dir, made there if there is none. */
export async function loadAdminToken(dataDir: string, configured?: string): Promise<string> {
  if (configured !== undefined) return configured;
  const path = adminTokenPath(dataDir);
  const existing = await readAdminToken(dataDir);
  if (existing !== undefined) return existing;
  await mkdir(dataDir, { recursive: true });
  const token = randomBytes(32).toString('hex');
  try {
    // `wx`: never overwrite a token another process wrote meanwhile.
    await writeFile(path, `${token}\n`, { mode: 0o600, flag: 'wx' });
    return token;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return (await readAdminToken(dataDir))!;
  }
}

/** The token a node keeps in `dataDir`, if it made one (what `glassbox node offer` reads). */
export async function readAdminToken(dataDir: string): Promise<string | undefined> {
  const path = adminTokenPath(dataDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const token = text.trim();
  if (token.length < 32)
    throw new GlassboxError('CONFIG_INVALID', `${path} holds no admin token (fewer than 32 characters)`, {
      field: 'adminToken',
    });
  return token;
}

/**
 * Whether `presented` is `expected`, in time independent of where they differ: both are hashed
 * first, so that neither their lengths nor their common prefix show in the timing.
 */
export function isAdminToken(expected: string, presented: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(expected), digest(presented));
}
