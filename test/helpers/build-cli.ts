import { buildCli } from '../../scripts/build-cli.mjs';

/**
 * vitest globalSetup: bundle the CLI before any test runs, so that tests which spawn
 * `node bin/hotline.js` (as users do) run the bundle of the code under test, never a stale one.
 */
export default async function setup(): Promise<void> {
  await buildCli();
}
