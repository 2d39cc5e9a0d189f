import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Browser tests drive a real Chromium and run in their own suite (`npm run test:browser`).
    exclude: ['test/browser/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    setupFiles: ['test/helpers/node-crypto-setup.ts'],
    // Finds (or starts) the PostgreSQL database of the PostgreSQL tests, and fails the run if there
    // is none: those tests never skip (README "Tests").
    // Tests that spawn bin/hotline.js run the bundle built here from the current sources.
    globalSetup: ['test/helpers/postgres-global-setup.ts', 'test/helpers/build-cli.ts'],
  },
});
