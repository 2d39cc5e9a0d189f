/** One line of the bench's table: a figure, what it is compared with, and its goal. */
export interface Row {
  measurement: string;
  value: number;
  unit: string;
  /** What the ratio is taken against (a floor, or the same measurement without the load). */
  against?: { label: string; value: number; unit: string };
  ratio?: number;
  goal?: string;
  /** undefined: no goal (reported only) or not measured. */
  met?: boolean;
  /** Measured below the size the goal is stated at. */
  reduced?: boolean;
  notMeasured?: boolean;
}

function fmt(n: number, unit: string): string {
  if (!Number.isFinite(n)) return '–';
  if (unit === 'bool') return n ? 'yes' : 'no';
  if (unit === 'bytes') return `${(n / 2 ** 20).toLocaleString('en-US', { maximumFractionDigits: 0 })} MiB`;
  const digits = Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : Math.abs(n) >= 1 ? 2 : 3;
  const text = n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  return unit === '' ? text : `${text} ${unit}`;
}

export function verdict(r: Row): string {
  if (r.notMeasured) return 'not measured';
  if (r.met === undefined) return 'reported';
  return (r.met ? 'met' : '**NOT met**') + (r.reduced ? ' (reduced size)' : '');
}

/** The Markdown table the bench prints (and the README quotes). */
export function formatTable(rows: readonly Row[]): string {
  const lines = ['| measurement | value | floor / baseline | ratio | goal | verdict |', '| --- | ---: | ---: | ---: | --- | --- |'];
  for (const r of rows) {
    const against = r.against ? `${r.against.label}: ${fmt(r.against.value, r.against.unit)}` : '';
    const ratio = r.ratio === undefined ? '' : Number.isFinite(r.ratio) ? `${r.ratio.toFixed(r.ratio >= 100 ? 0 : 2)}×` : '–';
    lines.push(`| ${r.measurement} | ${r.notMeasured ? 'not measured' : fmt(r.value, r.unit)} | ${against} | ${ratio} | ${r.goal ?? ''} | ${verdict(r)} |`);
  }
  return lines.join('\n');
}
