// A real Prometheus beside the real node (test/node/real-node.test.ts): configured from what the
// chart renders with monitoring.podMonitor.enabled (each PodMonitor's pod selector, port name, path
// and job relabeling) and the pods the API lists (their IPs, the named container port), with the
// chart's alert rules loaded. It runs as a process in the node's network namespace, where the pod
// IPs are routed (not in a pod: nothing here depends on the prometheus-operator), and the test
// queries it over the node's veth address.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { stringify } from "yaml";
import type { K8sObject } from "../support/helm.ts";

/** The part of a PodMonitor the static configuration follows. */
interface PodMonitorSpec {
  selector: { matchLabels: Record<string, string> };
  podMetricsEndpoints: Array<{ port: string; path?: string; relabelings?: Array<{ targetLabel?: string; replacement?: string }> }>;
}

/** The part of a Pod from the API that scraping needs. */
export interface PodInfo {
  metadata: { name: string; namespace: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec: { nodeName?: string; containers: Array<{ ports?: Array<{ name?: string; containerPort: number }> }> };
  status: { podIP?: string; phase?: string };
}

export interface ScrapeJob {
  readonly job: string;
  readonly path: string;
  readonly targets: ReadonlyArray<{ readonly address: string; readonly pod: string; readonly namespace: string }>;
}

/**
 * One static scrape job per PodMonitor endpoint: the running pods its selector matches, at their
 * IP and the container port its endpoint names, under the job name its relabeling sets.
 */
export function scrapeJobsFrom(rendered: readonly K8sObject[], pods: readonly PodInfo[]): ScrapeJob[] {
  const monitors = rendered.filter((o) => o.kind === "PodMonitor");
  return monitors.flatMap((m) => {
    const spec = m.spec as PodMonitorSpec;
    const matching = pods.filter(
      (p) =>
        p.metadata.namespace === m.metadata.namespace &&
        !p.metadata.deletionTimestamp &&
        p.status.phase === "Running" &&
        Object.entries(spec.selector.matchLabels).every(([k, v]) => p.metadata.labels?.[k] === v),
    );
    return spec.podMetricsEndpoints.map((e) => {
      const job = e.relabelings?.find((r) => r.targetLabel === "job")?.replacement ?? `${m.metadata.namespace}/${m.metadata.name}`;
      const targets = matching.flatMap((p) => {
        const port = p.spec.containers.flatMap((c) => c.ports ?? []).find((x) => x.name === e.port);
        return port && p.status.podIP ? [{ address: `${p.status.podIP}:${port.containerPort}`, pod: p.metadata.name, namespace: p.metadata.namespace }] : [];
      });
      return { job, path: e.path ?? "/metrics", targets };
    });
  });
}

export interface Prometheus {
  readonly url: string;
  /** An instant query's result vector (throws unless the query succeeded). */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** GET of an API path, its `data`. */
  api<T>(apiPath: string): Promise<T>;
  stop(): Promise<void>;
}

/**
 * Starts `prometheus` in the network namespace of the process `netnsPid` (the node's holder),
 * listening on listenIp:port, scraping and evaluating every second.
 */
export async function startPrometheus(opts: {
  prometheus: string;
  dir: string;
  netnsPid: number;
  listenIp: string;
  port: number;
  jobs: readonly ScrapeJob[];
  ruleFiles: readonly string[];
}): Promise<Prometheus> {
  await mkdir(path.join(opts.dir, "data"), { recursive: true });
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
    rule_files: [...opts.ruleFiles],
    scrape_configs: opts.jobs.map((j) => ({
      job_name: j.job,
      metrics_path: j.path,
      static_configs: j.targets.map((t) => ({ targets: [t.address], labels: { pod: t.pod, namespace: t.namespace } })),
    })),
  };
  const configFile = path.join(opts.dir, "prometheus.yml");
  await writeFile(configFile, stringify(config));
  const logFile = path.join(opts.dir, "prometheus.log");
  const fd = openSync(logFile, "a");
  // setpriv --pdeathsig: it dies with the test process even when that is SIGKILLed.
  const child: ChildProcess = spawn(
    "setpriv",
    [
      "--pdeathsig", "KILL", "--",
      "nsenter", "-t", String(opts.netnsPid), "-n", "--",
      opts.prometheus,
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(opts.dir, "data")}`,
      `--web.listen-address=${opts.listenIp}:${opts.port}`,
      "--storage.tsdb.retention.time=1h",
    ],
    { stdio: ["ignore", fd, fd] },
  );
  closeSync(fd);
  let exited = false;
  const done = new Promise<void>((resolve) => child.once("exit", () => ((exited = true), resolve())));
  const url = `http://${opts.listenIp}:${opts.port}`;
  const log = () => readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n");
  const api = async <T>(apiPath: string): Promise<T> => {
    const r = await fetch(`${url}${apiPath}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await r.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`prometheus ${apiPath}: ${body.error ?? r.status}`);
    return body.data;
  };
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
    if (!exited) child.kill("SIGKILL");
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`prometheus exited at start:\n${log()}`);
    const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready within 30 s:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    api,
    query: async (expr) => (await api<{ resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    stop,
  };
}

/** Every query of a Grafana dashboard: each panel target's expr, with the panel's title. */
export function dashboardQueries(dashboard: { panels: Array<{ title: string; targets?: Array<{ expr?: string }> }> }): Array<{ panel: string; expr: string }> {
  return dashboard.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => (t.expr ? [{ panel: p.title, expr: t.expr }] : [])));
}
