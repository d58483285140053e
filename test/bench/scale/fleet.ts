/**
 * The simulated fleet: Node objects, one simulated host tree per node (on tmpfs), and the real
 * agent code on each. Agents run in this process, each wired as node-agent/sim/sim-node.ts and
 * node-agent/main.ts wire it: its own API connection, its own `nodeChannel` (a watch of its own
 * KernelLivePatchNode by field selector, its entries written into that object's status) and its
 * own watch of its Node. 1000 agent processes would need ~60 GiB of RAM; one extra node runs the
 * bundled agent as its own process, so one agent's RSS and CPU are measured as on a node.
 *
 * There is no shared-watch mode any more: with one small object per node, each agent's watch only
 * ever carries its own object (no N² fan-out), so every agent watches as in production at every size.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, open } from "node:fs/promises";
import path from "node:path";
import { pino, type Logger } from "pino";
import { createLoader } from "../../../node-agent/create-loader.ts";
import { createHostDriver } from "../../../node-agent/host/driver.ts";
import { watchOwnNode } from "../../../node-agent/kube/agent-api.ts";
import type { Connection } from "../../../kube/connection.ts";
import { KubeHttp, MERGE } from "../../../kube/http-client.ts";
import { nodeChannel, type NodeChannel } from "../../../node-agent/kube/node-channel.ts";
import type { Watcher } from "../../../node-agent/kube/watcher.ts";
import { Agent } from "../../../node-agent/loop/agent.ts";
import { moduleSources } from "../../../node-agent/loop/sources.ts";
import { layoutSimHost } from "../../../node-agent/sim/layout.ts";
import { failureKind, pool } from "./util.ts";

export const nodeName = (i: number) => `bench-node-${String(i).padStart(4, "0")}`;

/**
 * Creates the Node objects as a kubelet registers them: the Node (labels, annotations, spec) by
 * POST, then its status by a PATCH of /status (as the kubelet posts it): 40–60 images with digests,
 * five conditions, addresses, capacity and allocatable, nodeInfo, 5–20 KiB of JSON each, so the
 * benchmark's lists and watches of Nodes carry what a real cluster's do. Their uids by name; logs
 * the average size.
 */
export async function createNodes(http: KubeHttp, names: readonly string[], log?: (line: string) => void): Promise<Map<string, string>> {
  let bytes = 0;
  const uids = await pool(names, 16, async (name, i) => {
    const { metadata, spec, status } = kubeletNode(name, i);
    const node = await http.json<{ metadata: { uid: string } }>("POST", "/api/v1/nodes", { body: { apiVersion: "v1", kind: "Node", metadata, spec } });
    const full = await http.json<object>("PATCH", `/api/v1/nodes/${name}/status`, { contentType: MERGE, body: { status } });
    bytes += JSON.stringify(full).length;
    return node.metadata.uid;
  });
  log?.(`${names.length} Nodes created, ${(bytes / Math.max(1, names.length) / 1024).toFixed(1)} KiB of JSON each on average`);
  return new Map(names.map((n, i) => [n, uids[i]!]));
}

/** A small deterministic generator, so that every run creates the same fleet. */
function seeded(seed: number): () => number {
  let x = (seed * 2654435761 + 1) >>> 0;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const hex = (random: () => number, n: number) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join("");

/** Image repositories as a node of a busy cluster holds them (system pods, CNI, CSI, monitoring, workloads). */
const REPOSITORIES = [
  "registry.k8s.io/kube-proxy",
  "registry.k8s.io/pause",
  "registry.k8s.io/coredns/coredns",
  "registry.k8s.io/sig-storage/csi-node-driver-registrar",
  "registry.k8s.io/sig-storage/livenessprobe",
  "docker.io/calico/node",
  "docker.io/calico/cni",
  "quay.io/cilium/cilium",
  "quay.io/prometheus/node-exporter",
  "quay.io/prometheus-operator/prometheus-config-reloader",
  "docker.io/grafana/promtail",
  "public.ecr.aws/eks-distro/kubernetes-csi/external-provisioner",
  "gcr.io/datadoghq/agent",
  "ghcr.io/fluxcd/source-controller",
  "mcr.microsoft.com/oss/kubernetes-csi/azuredisk-csi",
  "europe-west1-docker.pkg.dev/acme-prod/platform/payments-api",
  "europe-west1-docker.pkg.dev/acme-prod/platform/checkout-worker",
  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team-search/indexer",
  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team-search/query-frontend",
  "harbor.internal.example.com/ml/feature-store-sync",
];

/** One Node as a kubelet of a cloud VM shows it (11–16 KiB of JSON before the server adds its metadata). */
function kubeletNode(name: string, i: number) {
  const random = seeded(i + 1);
  const zone = `europe-west1-${"bcd"[i % 3]}`;
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const now = new Date().toISOString();
  const images = Array.from({ length: 40 + Math.floor(random() * 21) }, (_, k) => {
    const repo = REPOSITORIES[k % REPOSITORIES.length]!;
    const tag = `v${1 + Math.floor(random() * 3)}.${Math.floor(random() * 30)}.${Math.floor(random() * 10)}-${hex(random, 7)}`;
    return { names: [`${repo}@sha256:${hex(random, 64)}`, `${repo}:${tag}`], sizeBytes: 5_000_000 + Math.floor(random() * 900_000_000) };
  });
  const condition = (type: string, status: string, reason: string, message: string) => ({ type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: now });
  const resources = { cpu: "16", "ephemeral-storage": "203070420Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", memory: "65842540Ki", pods: "110" };
  return {
    metadata: {
      name,
      labels: {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "n2-standard-16",
        "beta.kubernetes.io/instance-type": "n2-standard-16",
        "topology.kubernetes.io/region": "europe-west1",
        "topology.kubernetes.io/zone": zone,
        "failure-domain.beta.kubernetes.io/region": "europe-west1",
        "failure-domain.beta.kubernetes.io/zone": zone,
        "cloud.google.com/gke-nodepool": `pool-${i % 4}`,
        bench: "yes",
      },
      annotations: {
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        "csi.volume.kubernetes.io/nodeid": JSON.stringify({ "pd.csi.storage.gke.io": `projects/acme-prod/zones/${zone}/instances/${name}` }),
      },
    },
    spec: { podCIDR: `10.${64 + (i >> 8)}.${i & 255}.0/24`, podCIDRs: [`10.${64 + (i >> 8)}.${i & 255}.0/24`], providerID: `gce://acme-prod/${zone}/${name}` },
    status: {
      capacity: resources,
      allocatable: { ...resources, cpu: "15890m", memory: "61134956Ki", "ephemeral-storage": "187149698332" },
      conditions: [
        condition("NetworkUnavailable", "False", "RouteCreated", "RouteController created a route"),
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status. AppArmor enabled"),
      ],
      addresses: [
        { type: "InternalIP", address: ip },
        { type: "ExternalIP", address: `34.${(i >> 8) & 255}.${i & 255}.${17 + (i % 200)}` },
        { type: "InternalDNS", address: `${name}.${zone}.c.acme-prod.internal` },
        { type: "Hostname", address: `${name}.${zone}.c.acme-prod.internal` },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: hex(random, 32),
        systemUUID: `${hex(random, 8)}-${hex(random, 4)}-${hex(random, 4)}-${hex(random, 4)}-${hex(random, 12)}`,
        bootID: `${hex(random, 8)}-${hex(random, 4)}-${hex(random, 4)}-${hex(random, 4)}-${hex(random, 12)}`,
        kernelVersion: "6.1.0-56-amd64",
        osImage: "Debian GNU/Linux 12 (bookworm)",
        containerRuntimeVersion: "containerd://1.7.24",
        kubeletVersion: "v1.31.4",
        kubeProxyVersion: "v1.31.4",
        operatingSystem: "linux",
        architecture: "amd64",
      },
      images,
    },
  };
}

/** Counters of one in-process agent. */
export interface AgentStats {
  /** Reads of the whole simulated host (one per agent pass). */
  hostReads: number;
  /** Deliveries of the node object's projected patches (one per watch event) handed to updatePatches. */
  deliveries: number;
  /**
   * Entries the agent loop handed to its channel (`applyEntry` calls) and their total latency until
   * the write carrying them landed. The channel coalesces entries set while a write is in flight into
   * one request, so requests can be fewer (the API server's counters give those).
   */
  writes: number;
  writeMs: number;
  /** Failed entry writes (the agent's pass fails and is retried with backoff), by kind. */
  failures: number;
  failureKinds: Record<string, number>;
  /** Entries written, by phase. */
  phases: Record<string, number>;
  /** ms since the benchmark's t0 when each host action finished, by outcome. */
  actions: Array<{ patch: string; op: string; outcome: string; at: number }>;
}

/** The sum of several agents' (or shards') counters; `at` maps each action's time to the run's clock. */
export function mergeStats(all: readonly AgentStats[], at: (t: number) => number = (t) => t): AgentStats {
  const t: AgentStats = { hostReads: 0, deliveries: 0, writes: 0, writeMs: 0, failures: 0, failureKinds: {}, phases: {}, actions: [] };
  for (const stats of all) {
    t.hostReads += stats.hostReads;
    t.deliveries += stats.deliveries;
    t.writes += stats.writes;
    t.writeMs += stats.writeMs;
    t.failures += stats.failures;
    for (const [kind, n] of Object.entries(stats.failureKinds)) t.failureKinds[kind] = (t.failureKinds[kind] ?? 0) + n;
    for (const [phase, n] of Object.entries(stats.phases)) t.phases[phase] = (t.phases[phase] ?? 0) + n;
    for (const a of stats.actions) t.actions.push({ ...a, at: at(a.at) });
  }
  return t;
}

interface FleetAgent {
  readonly name: string;
  readonly agent: Agent;
  readonly stats: AgentStats;
  readonly channel: NodeChannel;
  readonly nodeWatch: Watcher;
  readonly http: KubeHttp;
}

export interface FleetOptions {
  readonly conn: Connection;
  readonly hostsDir: string;
  readonly kernelRelease: string;
  readonly transitionMs: number;
  /** Each agent's resync period (the agent's default: 60 s). */
  readonly resyncMs: number;
  /** Time origin for action timestamps. */
  readonly clock: () => number;
}

/** N in-process agents on simulated hosts. */
export class Fleet {
  readonly agents: FleetAgent[] = [];
  private readonly log: Logger = pino({ level: process.env.KLP_BENCH_LOG ?? "silent" });

  constructor(private readonly opts: FleetOptions) {}

  async start(names: readonly string[]): Promise<void> {
    await pool(names, 32, (name) => layoutSimHost(path.join(this.opts.hostsDir, name), { kernelRelease: this.opts.kernelRelease, transitionMs: this.opts.transitionMs }));
    await pool(names, 16, (name, i) => this.startAgent(name, i));
  }

  get passesDone(): number {
    return this.agents.filter((a) => a.agent.lastPassAt > 0).length;
  }

  /** The agents run in this process (a FleetHandle, fleet-shards.ts). */
  readonly pids: number[] = [];

  async totals(): Promise<AgentStats> {
    return mergeStats(this.agents.map((a) => a.stats));
  }

  async stop(): Promise<void> {
    for (const a of this.agents) {
      a.nodeWatch.stop();
      a.channel.stop();
    }
    await Promise.all(this.agents.map((a) => a.agent.stop()));
    for (const a of this.agents) a.http.close();
  }

  /** As node-agent/sim/sim-node.ts startSimNode, with counters around the channel's writes. */
  private async startAgent(name: string, index: number): Promise<void> {
    const root = path.join(this.opts.hostsDir, name);
    const http = new KubeHttp(this.opts.conn, { localAddress: fleetLoopbackAddress(index) });
    const stats: AgentStats = { hostReads: 0, deliveries: 0, writes: 0, writeMs: 0, failures: 0, failureKinds: {}, phases: {}, actions: [] };
    const host = createHostDriver({ hostRoot: root, loader: createLoader(root, "sim"), log: this.log });
    const driver = { ...host, inspect: () => (stats.hostReads++, host.inspect()) };
    const channel = nodeChannel(http, name, this.log);
    const agent = new Agent({
      nodeName: name,
      driver,
      api: {
        event: channel.api.event,
        applyEntry: async (patch, entry) => {
          const started = performance.now();
          let rv: string | undefined | void;
          try {
            rv = await channel.api.applyEntry(patch, entry);
          } catch (err) {
            stats.failures++;
            const kind = failureKind(err);
            stats.failureKinds[kind] = (stats.failureKinds[kind] ?? 0) + 1;
            throw err;
          }
          stats.writes++;
          stats.writeMs += performance.now() - started;
          stats.phases[entry.phase] = (stats.phases[entry.phase] ?? 0) + 1;
          return rv;
        },
      },
      sources: moduleSources({ http, imageModulesDir: path.join(root, ".images"), maxBytes: 64 << 20 }),
      log: this.log,
      resyncMs: this.opts.resyncMs,
      onAction: (patch, action, outcome) => stats.actions.push({ patch, op: action.op, outcome, at: this.opts.clock() }),
    });
    const nodeWatch = watchOwnNode(http, name, (labels) => agent.updateNode(labels), this.log);
    this.agents.push({ name, agent, stats, channel, nodeWatch, http });
    await Promise.all([
      nodeWatch.start(),
      channel.start((patches) => {
        stats.deliveries++;
        agent.updatePatches(patches);
      }),
    ]);
  }
}

/**
 * The loopback address agent `index` of a process connects from (127.1.0.0/16; every 127/8 address
 * is this host's): one per agent, as nodes have one each. All from 127.0.0.1, a 5,000-node fleet
 * holds ~15,500 connections to the API server: more than the 14,116 even ports of 32768–60999
 * that Linux's connect() tries first, so every new connection scanned them all before taking an
 * odd one (16 s of the fleet's CPU in one rollout, in the kernel under connect(); none at 1,000).
 */
export const fleetLoopbackAddress = (index: number) => `127.1.${(index >> 8) & 255}.${index & 255}`;

/** The node flags of an image's CMD (images/<image>.Dockerfile), so the process runs as deployed. */
export function imageNodeFlags(repo: string, image: "agent" | "operator"): string[] {
  const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(path.join(repo, `images/${image}.Dockerfile`), "utf8"))?.[1];
  const argv = cmd ? (JSON.parse(cmd) as string[]) : [];
  return argv.slice(1).filter((a) => a.startsWith("--"));
}

/**
 * The environment an image's ENV lines set (images/<image>.Dockerfile, `ENV K=V ...` without quotes),
 * so the bench's processes run as deployed; KLP_BENCH_NO_IMAGE_ENV=1 leaves it out to compare.
 */
export function imageEnv(repo: string, image: "agent" | "operator"): Record<string, string> {
  if (process.env.KLP_BENCH_NO_IMAGE_ENV) return {};
  const text = readFileSync(path.join(repo, `images/${image}.Dockerfile`), "utf8");
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith("ENV ")) continue;
    for (const pair of line.slice(4).trim().split(/\s+/)) {
      const eq = pair.indexOf("=");
      if (eq > 0) env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}

/** One agent as a node runs it: the bundled agent in its own process (the image's node flags), with its own watches. */
export async function startAgentProcess(opts: {
  bundle: string;
  flags: readonly string[];
  /** The image's ENV (imageEnv). */
  env: Record<string, string>;
  name: string;
  root: string;
  kubeconfig: string;
  kernelRelease: string;
  transitionMs: number;
  port: number;
  logFile: string;
}): Promise<ChildProcess> {
  await mkdir(opts.root, { recursive: true });
  await layoutSimHost(opts.root, { kernelRelease: opts.kernelRelease, transitionMs: opts.transitionMs });
  const log = await open(opts.logFile, "a");
  const child = spawn(process.execPath, [...opts.flags, opts.bundle], {
    env: {
      ...opts.env,
      PATH: process.env.PATH ?? "",
      NODE_NAME: opts.name,
      KPATCH_HOST_ROOT: opts.root,
      KPATCH_LOADER: "sim",
      KUBECONFIG: opts.kubeconfig,
      LOG_LEVEL: "warn",
      METRICS_PORT: String(opts.port),
    },
    stdio: ["ignore", log.fd, log.fd],
  });
  await log.close();
  process.once("exit", () => child.kill("SIGKILL")); // never outlive the benchmark
  return child;
}
