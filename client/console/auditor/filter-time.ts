/**
 * The log filter's times, typed as `YYYY-MM-DD hh:mm[:ss]` in local time: the same form as the
 * times the log shows, and the same in every interface language (a datetime-local field shows the
 * browser's own, often English, format whatever the console's language).
 */
const PATTERN = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/;

/** ms since the epoch; undefined for an empty field; null when the text is no valid time. */
export function parseFilterTime(text: string): number | undefined | null {
  const s = text.trim();
  if (s === '') return undefined;
  const m = PATTERN.exec(s);
  if (!m) return null;
  const [y, mo, d, hh, mm, ss] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x))) as [number, number, number, number, number, number];
  const date = new Date(y, mo - 1, d, hh, mm, ss);
  // new Date rolls 2026-02-30 over into March: such a date was mistyped, not meant.
  if (date.getFullYear() !== y || date.getMonth() !== mo - 1 || date.getDate() !== d || date.getHours() !== hh || date.getMinutes() !== mm || date.getSeconds() !== ss) return null;
  return date.getTime();
}
