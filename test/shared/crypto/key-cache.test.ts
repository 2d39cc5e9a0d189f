import { describe, expect, it } from 'vitest';
import { KeyCache } from '../../../shared/crypto/key-cache.js';

const bytes = (n: number) => new Uint8Array([n, n >> 8]);

describe('KeyCache', () => {
  it('imports once per key content, whatever array carries it', () => {
    const cache = new KeyCache<number>(8);
    let made = 0;
    const make = () => ++made;
    expect(cache.get(bytes(1), make)).toBe(1);
    expect(cache.get(bytes(1), make)).toBe(1);
    expect(made).toBe(1);
  });

  it('stays within its bound and keeps the keys in use while one-off keys stream through', () => {
    const cache = new KeyCache<string>(4);
    cache.get(bytes(1), () => 'long-lived');
    for (let i = 100; i < 200; i++) {
      cache.get(bytes(i), () => `one-off ${i}`);
      // The long-lived key is used between one-off keys, as a device key is between messages.
      expect(cache.get(bytes(1), () => 'imported again')).toBe('long-lived');
    }
    expect(cache.size).toBe(4);
  });

  it('forgets a deleted secret', () => {
    const cache = new KeyCache<string>(4);
    cache.set(bytes(7), 'secret');
    cache.delete(bytes(7));
    expect(cache.get(bytes(7), () => 'fresh')).toBe('fresh');
  });
});
