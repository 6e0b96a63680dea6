// The result table: one row per figure with the runcts median, the Go shim median and their
// ratio, the "runcts grouped" column (CRI figures, when measured) and the runc floor (latency
// figures without containerd or shim). Also written as JSON.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { median } from './util';

/** Who produced a value: our shim, containerd's Go shim, our shim in grouping mode, bare runc. */
export type Column = 'runcts' | 'go' | 'grouped' | 'floor';

export interface Figure {
  section: string;
  name: string;
  unit: string;
  /** Which direction is better (ratios < 1 are good for runcts when 'lower'). */
  better: 'lower' | 'higher';
  /** Median (or single value) per column. */
  values: Partial<Record<Column, number>>;
  /** Raw samples per column, for the JSON file. */
  samples?: Partial<Record<Column, number[]>>;
  /** Shown under the table. */
  note?: string;
}

/** A figure whose values are the medians of the given samples. */
export function figureOfSamples(section: string, name: string, unit: string, better: 'lower' | 'higher', samples: Partial<Record<Column, number[]>>, note?: string): Figure {
  const values: Partial<Record<Column, number>> = {};
  for (const [col, xs] of Object.entries(samples) as Array<[Column, number[]]>) if (xs.length) values[col] = median(xs);
  return { section, name, unit, better, values, samples, note };
}

export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b;
}

function fmt(v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '-';
  const a = Math.abs(v);
  if (Number.isInteger(v)) return String(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

interface TableColumn {
  title: string;
  width: number;
  cell: (f: Figure) => string;
}

function columns(figures: readonly Figure[]): TableColumn[] {
  const has = (c: Column): boolean => figures.some(f => f.values[c] !== undefined);
  const v = (c: Column) => (f: Figure): string => fmt(f.values[c]);
  const r = (a: Column, b: Column) => (f: Figure): string => fmt(ratio(f.values[a], f.values[b]));
  const cols: TableColumn[] = [
    { title: 'runcts', width: 9, cell: v('runcts') },
    { title: 'go shim', width: 9, cell: v('go') },
    { title: 'runcts/go', width: 9, cell: r('runcts', 'go') },
  ];
  if (has('grouped')) cols.push({ title: 'grouped', width: 9, cell: v('grouped') }, { title: 'grp/go', width: 7, cell: r('grouped', 'go') });
  if (has('floor')) cols.push({ title: 'runc', width: 8, cell: v('floor') }, { title: 'runcts/runc', width: 11, cell: r('runcts', 'floor') }, { title: 'go/runc', width: 7, cell: r('go', 'floor') });
  return cols;
}

/** The table as text: sections, one row per figure, notes underneath. */
export function renderTable(figures: readonly Figure[]): string {
  const notes: string[] = [];
  const names = figures.map(f => (f.note ? `${f.name} (${notes.push(f.note)})` : f.name));
  const nameWidth = Math.max(40, ...names.map(n => n.length));
  const cols = columns(figures);
  const unitWidth = Math.max(4, ...figures.map(f => f.unit.length));
  const header = `${'figure (median)'.padEnd(nameWidth)}  ${'unit'.padEnd(unitWidth)} ${cols.map(c => c.title.padStart(c.width)).join(' ')}`;
  const lines = [header, '-'.repeat(header.length)];
  let section = '';
  figures.forEach((f, i) => {
    if (f.section !== section) {
      section = f.section;
      lines.push(`[${section}]`);
    }
    lines.push(`${names[i]!.padEnd(nameWidth)}  ${f.unit.padEnd(unitWidth)} ${cols.map(c => c.cell(f).padStart(c.width)).join(' ')}`);
  });
  lines.push('-'.repeat(header.length));
  lines.push('ratios: x/go = x divided by the Go shim (containerd-shim-runc-v2); for ms and MiB lower is better, for MB/s and containers/s higher.');
  if (cols.some(c => c.title === 'runc')) lines.push('runc: the floor, runc run / runc exec directly, without containerd or shim.');
  notes.forEach((n, i) => lines.push(`(${i + 1}) ${n}`));
  return lines.join('\n');
}

/** Figures plus their ratios, as written to the JSON file. */
export function figuresJson(figures: readonly Figure[]): unknown[] {
  return figures.map(f => ({
    ...f,
    ratios: {
      runcts_go: ratio(f.values.runcts, f.values.go),
      grouped_go: ratio(f.values.grouped, f.values.go),
      runcts_floor: ratio(f.values.runcts, f.values.floor),
      go_floor: ratio(f.values.go, f.values.floor),
    },
  }));
}

/**
 * Write the results to <dir>/bench-results.json. The directory ignores itself in git (a
 * `.gitignore` holding `*`), so results never show up as untracked files.
 */
export function writeResults(dir: string, body: object): string {
  fs.mkdirSync(dir, { recursive: true });
  const ignore = path.join(dir, '.gitignore');
  if (!fs.existsSync(ignore)) fs.writeFileSync(ignore, '*\n');
  const file = path.join(dir, 'bench-results.json');
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(body, null, 2) + '\n');
  fs.renameSync(`${file}.tmp`, file);
  return file;
}
