/**
 * Plain aligned tables as kubectl prints them: upper-case headers, left-aligned columns three
 * spaces apart, no trailing blanks, no colours (a table is as often piped to grep as read).
 */
export type Row = readonly string[];

const GAP = "   ";

export function formatTable(headers: readonly string[], rows: readonly Row[]): string {
  const all = [headers.map((h) => h.toUpperCase()), ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => headers.map((_, i) => (r[i] ?? "").padEnd(widths[i] ?? 0)).join(GAP).trimEnd() + "\n").join("");
}

/** kubectl's "No resources found." for an empty list. */
export function formatTableOrNone(headers: readonly string[], rows: readonly Row[], none: string): string {
  return rows.length === 0 ? `${none}\n` : formatTable(headers, rows);
}
