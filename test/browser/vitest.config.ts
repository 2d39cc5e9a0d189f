import { defineConfig } from 'vitest/config';

/**
 * The browser suite (`npm run test:browser`): Debian's Chromium driven through playwright-core
 * against a real server on 127.0.0.1:0. Kept apart from `npm test` because it needs the browser
 * (`apt-get install -y chromium`; .ci/run installs it).
 */
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    testTimeout: 90_000,
    hookTimeout: 60_000,
    pool: 'forks',
    setupFiles: ['test/helpers/node-crypto-setup.ts'],
    // One Chromium at a time on a 2-core machine.
    fileParallelism: false,
  },
});
