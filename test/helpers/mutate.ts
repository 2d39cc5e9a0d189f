/**
 * Deterministic structural mutation of JSON values, for the bounded fuzz tests: a seeded PRNG so
 * that a failure is reproducible from its seed, and mutations that reach every kind of field
 * (wrong types, huge numbers, floats, lone surrogates, deleted and extra members, truncated strings).
 */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x1_0000_0000;
  };
}

const ODD_VALUES: unknown[] = [null, true, 0, -1, 1.5, 2 ** 53, -0, '', '\ud800', 'A'.repeat(70_000), [], {}, { __proto__: { x: 1 } }, '=', 'AAAA', '0'.repeat(64), NaN];

/** A copy of `value` with one random change somewhere inside it. */
export function mutate(value: unknown, rnd: () => number): unknown {
  const copy = JSON.parse(JSON.stringify(value)) as unknown;
  const paths: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        paths.push({ parent: v, key: i });
        walk(x);
      });
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        paths.push({ parent: v as Record<string, unknown>, key: k });
        walk(x);
      }
    }
  };
  walk(copy);
  if (paths.length === 0) return ODD_VALUES[Math.floor(rnd() * ODD_VALUES.length)];
  const { parent, key } = paths[Math.floor(rnd() * paths.length)]!;
  const target = parent as Record<string | number, unknown>;
  const r = rnd();
  if (r < 0.35) target[key] = ODD_VALUES[Math.floor(rnd() * ODD_VALUES.length)];
  else if (r < 0.5 && !Array.isArray(parent)) delete target[key];
  else if (r < 0.6 && !Array.isArray(parent)) target[`x${Math.floor(rnd() * 100)}`] = 1;
  else if (typeof target[key] === 'string') {
    const s = target[key] as string;
    const i = Math.floor(rnd() * (s.length + 1));
    target[key] = rnd() < 0.5 ? s.slice(0, i) : s.slice(0, i) + String.fromCharCode(Math.floor(rnd() * 0x3000)) + s.slice(i + 1);
  } else if (typeof target[key] === 'number') target[key] = (target[key] as number) + (rnd() < 0.5 ? 1 : -1) * Math.floor(rnd() * 1e6);
  else target[key] = ODD_VALUES[Math.floor(rnd() * ODD_VALUES.length)];
  return copy;
}
