// Vitest setup file: the tests run shared/ with Node's native crypto plugged in, as the server, the
// CLI and the bench do (the pure-JS paths are covered by tests that call them by name).
import { useNodeCrypto } from '../../server/node-crypto.js';

useNodeCrypto();
