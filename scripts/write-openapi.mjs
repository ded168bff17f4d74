// Writes docs/api/openapi.json from the built route table (dist/api/openapi.js): the document the
// node serves at GET /v1/openapi.json, never edited by hand (test/api/openapi.test.ts compares them).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openApiDocument } from '../dist/api/openapi.js';

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'api', 'openapi.json');
await mkdir(dirname(file), { recursive: true });
await writeFile(file, `${JSON.stringify(openApiDocument(), null, 2)}\n`);
console.log(`openapi: ${file}`);
