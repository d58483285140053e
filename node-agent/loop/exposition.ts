/**
 * Counters, gauges and summaries in the Prometheus text format, by hand. The agent runs on every
 * node and must idle small: importing prom-client alone takes a Node process from 43 to 56 MiB
 * RSS (it loads cluster, perf_hooks and v8 support), more than the agent's whole metrics need.
 */

export type Labels = Readonly<Record<string, string>>;
type Kind = "counter" | "gauge" | "summary";

interface Series {
  readonly labels: Labels;
  value: number;
  /** Summaries only: the number of observations. */
  count: number;
}

interface Family {
  readonly name: string;
  readonly help: string;
  readonly kind: Kind;
  readonly series: Map<string, Series>;
}

export interface Counter {
  inc(labels?: Labels, by?: number): void;
  /** For a total read from elsewhere (e.g. the process's CPU time): must only grow. */
  setTotal(labels: Labels, value: number): void;
}

export interface Gauge {
  set(labels: Labels, value: number): void;
  remove(labels: Labels): void;
  /** Drops every series (before setting the current set again). */
  clear(): void;
}

export interface Summary {
  observe(labels: Labels, value: number): void;
}

export class MetricSet {
  private readonly families: Family[] = [];

  counter(name: string, help: string): Counter {
    const f = this.family(name, help, "counter");
    return {
      inc: (labels = {}, by = 1) => (this.series(f, labels).value += by),
      setTotal: (labels, value) => (this.series(f, labels).value = value),
    };
  }

  gauge(name: string, help: string): Gauge {
    const f = this.family(name, help, "gauge");
    return {
      set: (labels, value) => (this.series(f, labels).value = value),
      remove: (labels) => f.series.delete(key(labels)),
      clear: () => f.series.clear(),
    };
  }

  summary(name: string, help: string): Summary {
    const f = this.family(name, help, "summary");
    return {
      observe: (labels, value) => {
        const s = this.series(f, labels);
        s.value += value;
        s.count++;
      },
    };
  }

  /** The text exposition format, version 0.0.4. */
  render(): string {
    const out: string[] = [];
    for (const f of this.families) {
      out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`, `# TYPE ${f.name} ${f.kind}`);
      for (const s of f.series.values()) {
        if (f.kind === "summary") {
          out.push(`${f.name}_sum${formatLabels(s.labels)} ${formatValue(s.value)}`, `${f.name}_count${formatLabels(s.labels)} ${s.count}`);
        } else {
          out.push(`${f.name}${formatLabels(s.labels)} ${formatValue(s.value)}`);
        }
      }
    }
    return `${out.join("\n")}\n`;
  }

  private family(name: string, help: string, kind: Kind): Family {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new Error(`invalid metric name ${name}`);
    if (this.families.some((f) => f.name === name)) throw new Error(`metric ${name} registered twice`);
    const f: Family = { name, help, kind, series: new Map() };
    this.families.push(f);
    return f;
  }

  private series(f: Family, labels: Labels): Series {
    const k = key(labels);
    let s = f.series.get(k);
    if (!s) {
      s = { labels: { ...labels }, value: 0, count: 0 };
      f.series.set(k, s);
    }
    return s;
  }
}

function key(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  return `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(",")}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
