/**
 * Prometheus text from the API server (its own /metrics, read with the admin credentials) and
 * from the operator, reduced to the counters the benchmark reports.
 */
import { get } from "node:http";
import type { KubeHttp } from "../../../kube/http-client.ts";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the Prometheus text format, keeping only the metrics `keep` accepts. */
export function parsePrometheus(text: string, keep: (name: string) => boolean): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m || !keep(m[1]!)) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples of `name` matching `where`, grouped by the label `by` or the key it makes (or "" for one total). */
export function sumBy(
  samples: readonly Sample[],
  name: string,
  by?: string | ((l: Record<string, string>) => string),
  where: (l: Record<string, string>) => boolean = () => true,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name || !where(s.labels)) continue;
    const key = by === undefined ? "" : typeof by === "string" ? (s.labels[by] ?? "") : by(s.labels);
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

/** after - before, per key (keys of either side). */
export function diff(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const k of new Set([...before.keys(), ...after.keys()])) out.set(k, (after.get(k) ?? 0) - (before.get(k) ?? 0));
  return out;
}

const API_METRICS = new Set([
  "apiserver_request_total",
  "apiserver_request_duration_seconds_sum",
  "apiserver_request_duration_seconds_count",
  "apiserver_watch_events_total",
  "apiserver_watch_events_sizes_sum",
  "apiserver_watch_events_sizes_count",
]);

/** The API server's counters the benchmark reads. */
export async function scrapeApiServer(http: KubeHttp): Promise<Sample[]> {
  const res = await http.stream("/metrics");
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return parsePrometheus(Buffer.concat(chunks).toString("utf8"), (n) => API_METRICS.has(n));
}

export interface ApiCounts {
  /** Requests by verb (LIST, GET, WATCH, APPLY, PATCH, POST, ...). */
  byVerb: Map<string, number>;
  /** Requests by verb and resource ("APPLY kernellivepatchnodes/status"). */
  byRequest: Map<string, number>;
  /** Server-side applies to kernellivepatchnodes/status (the agents' entry writes), all and successful. */
  entryApplies: number;
  entryAppliesOk: number;
  /** Server-side applies to kernellivepatchnodes (the operator's projections), successful. */
  projectionApplies: number;
  /** Server-side applies to kernellivepatches/status (the operator's roll-ups), successful. */
  patchStatusApplies: number;
  /** Watch events sent to watchers, and their bytes: KernelLivePatches, KernelLivePatchNodes. */
  patchWatchEvents: number;
  patchWatchBytes: number;
  nodeObjectWatchEvents: number;
  nodeObjectWatchBytes: number;
  /** Mean server-side latency (ms, apiserver_request_duration_seconds) of: entry applies, projection applies, patch status applies, event POSTs. */
  latencyMs: { entry: number; projection: number; patchStatus: number; events: number };
}

const isPatches = (l: Record<string, string>) => l.resource === "kernellivepatches" || l.kind === "KernelLivePatch";
const isNodeObjects = (l: Record<string, string>) => l.resource === "kernellivepatchnodes" || l.kind === "KernelLivePatchNode";
const ok = (l: Record<string, string>) => /^2/.test(l.code ?? "");

export function apiCounts(before: readonly Sample[], after: readonly Sample[]): ApiCounts {
  const d = (name: string, by?: string | ((l: Record<string, string>) => string), where?: (l: Record<string, string>) => boolean) => diff(sumBy(before, name, by, where), sumBy(after, name, by, where));
  const one = (name: string, where: (l: Record<string, string>) => boolean) => d(name, undefined, where).get("") ?? 0;
  const applies = (l: Record<string, string>) => l.verb === "APPLY";
  return {
    byVerb: d("apiserver_request_total", "verb"),
    byRequest: d("apiserver_request_total", (l) => `${l.verb} ${l.resource ?? ""}${l.subresource ? `/${l.subresource}` : ""}`),
    entryApplies: one("apiserver_request_total", (l) => isNodeObjects(l) && l.subresource === "status" && applies(l)),
    entryAppliesOk: one("apiserver_request_total", (l) => isNodeObjects(l) && l.subresource === "status" && applies(l) && ok(l)),
    projectionApplies: one("apiserver_request_total", (l) => isNodeObjects(l) && !l.subresource && applies(l) && ok(l)),
    patchStatusApplies: one("apiserver_request_total", (l) => isPatches(l) && l.subresource === "status" && applies(l) && ok(l)),
    patchWatchEvents: one("apiserver_watch_events_total", isPatches),
    patchWatchBytes: one("apiserver_watch_events_sizes_sum", isPatches),
    nodeObjectWatchEvents: one("apiserver_watch_events_total", isNodeObjects),
    nodeObjectWatchBytes: one("apiserver_watch_events_sizes_sum", isNodeObjects),
    latencyMs: {
      entry: meanMs(before, after, (l) => isNodeObjects(l) && l.subresource === "status" && applies(l)),
      projection: meanMs(before, after, (l) => isNodeObjects(l) && !l.subresource && applies(l)),
      patchStatus: meanMs(before, after, (l) => isPatches(l) && l.subresource === "status" && applies(l)),
      events: meanMs(before, after, (l) => l.resource === "events" && l.verb === "POST"),
    },
  };
}

/** Mean server-side request duration in ms of the requests matching `where`, between two scrapes (NaN: none). */
export function meanMs(before: readonly Sample[], after: readonly Sample[], where: (l: Record<string, string>) => boolean): number {
  const d = (name: string) => diff(sumBy(before, name, undefined, where), sumBy(after, name, undefined, where)).get("") ?? 0;
  const count = d("apiserver_request_duration_seconds_count");
  return count > 0 ? (d("apiserver_request_duration_seconds_sum") / count) * 1000 : NaN;
}

/** prom-client's default Node.js memory gauges (the operator registers them). */
const HEAP_METRICS = new Set(["nodejs_heap_size_used_bytes", "nodejs_heap_size_total_bytes", "nodejs_external_memory_bytes"]);

/** Where the operator's memory is, from its own gauges, in MiB (NaN when not exported). */
export interface HeapSample {
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
}

export function heap(samples: readonly Sample[]): HeapSample {
  const mib = (name: string) => (samples.find((s) => s.name === name)?.value ?? NaN) / 2 ** 20;
  return { heapUsedMiB: mib("nodejs_heap_size_used_bytes"), heapTotalMiB: mib("nodejs_heap_size_total_bytes"), externalMiB: mib("nodejs_external_memory_bytes") };
}

/** The operator's /metrics (plain HTTP). */
export function scrapeOperator(port: number): Promise<Sample[]> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path: "/metrics", timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve(parsePrometheus(body, (n) => n.startsWith("controller_runtime_reconcile") || n.startsWith("workqueue") || HEAP_METRICS.has(n))));
      res.on("error", reject);
    }).on("error", reject);
  });
}

/** Reconciles per controller between two operator scrapes. */
export function reconciles(before: readonly Sample[], after: readonly Sample[]): Map<string, number> {
  return diff(sumBy(before, "controller_runtime_reconcile_total", "controller"), sumBy(after, "controller_runtime_reconcile_total", "controller"));
}

/** Seconds spent in reconciles per controller between two operator scrapes (wall time, API calls included). */
export function reconcileSeconds(before: readonly Sample[], after: readonly Sample[]): Map<string, number> {
  const name = "controller_runtime_reconcile_time_seconds_sum";
  return diff(sumBy(before, name, "controller"), sumBy(after, name, "controller"));
}
