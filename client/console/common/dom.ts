/**
 * A tiny DOM builder. Text always goes in through text nodes, never innerHTML: message text,
 * subjects and device names come from peers (attacker-controlled).
 *
 * @example
 * h('p', { class: 'note' }, 'hello ', h('b', {}, 'world'))
 */
export type Child = Node | string | number | false | null | undefined;
export type Attrs = Record<string, string | number | boolean | undefined | ((ev: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(name.replace(/^on/, ''), value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replace an element's children. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, children);
}

/** mm:ss (or h:mm:ss) of a non-negative duration. */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const mm = String(Math.floor((total % 3600) / 60)).padStart(2, '0');
  const ss = String(total % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** A local timestamp with its zone, ISO-like and unambiguous across languages and capitals. */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${zoneOf(d)}`;
}

/**
 * The zone of a local time as its offset from UTC ("UTC", "UTC+09:00", "UTC-05:30"): the same
 * instant reads 23:05:09 in Tokyo and 22:05:09 in Beijing, so a time without its zone misleads
 * when the two sides compare notes.
 */
export function zoneOf(d: Date): string {
  const minutes = -d.getTimezoneOffset();
  if (minutes === 0) return 'UTC';
  const a = Math.abs(minutes);
  return `UTC${minutes > 0 ? '+' : '-'}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

/** Group a hex fingerprint in fours for reading aloud. */
export function groupHex(hex: string): string {
  return hex.replace(/(.{4})/g, '$1 ').trim();
}
