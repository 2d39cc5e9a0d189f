import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';

/** WCAG 2.x relative luminance of a #rrggbb colour. */
function luminance(hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
}

function contrast(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi! + 0.05) / (lo! + 0.05);
}

describe('console badge colours', () => {
  it('give white badge text at least WCAG AA contrast (4.5:1) for every precedence (issue 10: IMMEDIATE was 3.81:1)', () => {
    const css = readFileSync('client/console/pages/style.css', 'utf8');
    for (const name of ['flash', 'immediate', 'priority', 'routine']) {
      const colour = new RegExp(`--${name}: (#[0-9a-f]{6})`).exec(css)?.[1];
      expect(colour, name).toBeDefined();
      expect(contrast(colour!, '#ffffff'), name).toBeGreaterThanOrEqual(4.5);
    }
  });
});
