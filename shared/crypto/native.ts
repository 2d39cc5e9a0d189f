import type * as NodeCrypto from 'node:crypto';

/**
 * Node's crypto module when running in Node, `undefined` in a browser.
 *
 * shared/ must run in both, so it cannot import 'node:crypto' statically. Node ≥ 20.16 exposes
 * built-ins through `process.getBuiltinModule`, which lets the hot paths (Ed25519, SHA-256) use the
 * native, synchronous implementation in Node (about 75× tweetnacl's Ed25519 speed here) and fall
 * back to WebCrypto / pure JS in the browser, without a bundler shim.
 */
export const nodeCrypto: typeof NodeCrypto | undefined = (() => {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const get = proc?.getBuiltinModule;
  return typeof get === 'function' ? (get.call(proc, 'node:crypto') as typeof NodeCrypto) : undefined;
})();
