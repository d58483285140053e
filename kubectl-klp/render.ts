/** The read commands' views as text: aligned tables, or the same rows as JSON or YAML (pure). */
import { stringify } from "yaml";
import { ageOf } from "./age.ts";
import type { OutputFormat } from "./args.ts";
import type { CveRow, NodeRow, StatusRow } from "./fleet-view.ts";
import { formatTableOrNone, type Row } from "./table.ts";

const dash = (s: string | undefined): string => (s === undefined || s === "" ? "-" : s);
const list = (xs: readonly string[], max = Infinity): string =>
  xs.length === 0 ? "-" : xs.slice(0, max).join(",") + (xs.length > max ? ` +${xs.length - max}` : "");

/** Rows as JSON or YAML: what a script reads (timestamps, not ages; every node by name). */
export function structured(rows: unknown, format: Exclude<OutputFormat, "table">): string {
  return format === "json" ? JSON.stringify(rows, null, 2) + "\n" : stringify(rows);
}

/** `status`: one line per node (and patch, when showing every patch). */
export function statusTable(rows: readonly StatusRow[], now: Date, onePatch: boolean): string {
  const headers = ["node", "release", "phase", "taint", "module", "since", "reason"];
  const cells = rows.map((r): Row => [
    ...(onePatch ? [] : [r.patch]),
    r.node,
    dash(r.kernelRelease),
    r.phase,
    dash(r.taintFlags),
    dash(r.moduleName),
    ageOf(r.lastTransitionTime, now),
    dash(r.reason),
  ]);
  return formatTableOrNone(onePatch ? headers : ["patch", ...headers], cells, "No nodes found.");
}

/** `cves`: how many nodes each CVE is fixed on, exposed on, or out of reach of. */
export function cveTable(rows: readonly CveRow[]): string {
  return formatTableOrNone(
    ["cve", "fixed", "exposed", "not applicable", "patches"],
    rows.map((c) => [c.id, String(c.fixed.length), String(c.exposed.length), String(c.notApplicable.length), list(c.patches)]),
    "No KernelLivePatch lists a CVE.",
  );
}

/** `cves --exposed`: one line per CVE and exposed node, and where each patch that fixes it stands there. */
export function exposedTable(rows: readonly CveRow[]): string {
  const cells = rows.flatMap((c) =>
    c.exposedNodes.map((n): Row => [
      c.id,
      n.node,
      dash(n.kernelRelease),
      n.patches.map((p) => `${p.patch} ${p.phase}${p.reason ? ` (${p.reason})` : ""}`).join(", "),
    ]),
  );
  return formatTableOrNone(["cve", "node", "release", "patches"], cells, "No exposed nodes.");
}

/** `nodes`: per node, what is live in its kernel and its taint. */
export function nodeTable(rows: readonly NodeRow[]): string {
  return formatTableOrNone(
    ["node", "release", "live", "cves", "taint", "failed"],
    rows.map((n) => [n.node, dash(n.kernelRelease), list(n.livePatches), list(n.cves, 3), dash(n.taintFlags), list(n.failedPatches)]),
    "No nodes found.",
  );
}
