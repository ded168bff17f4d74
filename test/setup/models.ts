import { buildExampleModels } from '../../examples/models/build.mjs';

/**
 * vitest globalSetup: builds the example models into examples/models/build/ before any test runs,
 * so that `npx vitest run` works on a fresh clone without `npm run models` first. Under a second
 * when they are already there (unchanged files are not rewritten).
 */
export default function setup(): void {
  buildExampleModels();
}
