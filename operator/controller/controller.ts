/**
 * The controller: informers on KernelLivePatches, Nodes and the agent DaemonSet feed one work
 * queue; each key is reconciled level-based from the caches (never from the event), so replays,
 * resyncs and restarts converge to the same writes. Nothing is reconciled before every cache has
 * listed once: an empty cache would read as "every node is gone".
 */
import { createHash } from "node:crypto";
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type KubernetesObject,
  type V1DaemonSet,
  type V1Node,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { selectorMatches } from "../../crds/label-selector.ts";
import { FINALIZER, GROUP, KernelLivePatch, PLURAL, VERSION, type KernelLivePatchStatus, type NodeEntry } from "../../crds/schema.ts";
import { AGENT_LABELS, desiredAgentDaemonSet } from "../agents/daemonset.ts";
import type { OperatorConfig } from "../config.ts";
import type { EventRecorder } from "../kube/events.ts";
import { Informer, type InformerOptions } from "../kube/informer.ts";
import { OPERATOR_FIELD_MANAGER, PatchClient } from "../kube/patches.ts";
import { timedKubeConfig } from "../kube/timed-kubeconfig.ts";
import { removePatchGauges, setPatchGauges, type OperatorMetrics } from "../metrics.ts";
import { admit } from "../rollout/admit.ts";
import { mergeConditions } from "../status/conditions.ts";
import { patchGauges } from "../status/patch-gauges.ts";
import { rollup, staleEntries, unloadComplete } from "../status/rollup.ts";
import { WorkQueue } from "./work-queue.ts";

const DAEMONSET_KEY = "daemonset";
const SPEC_HASH = `${GROUP}/agent-spec-hash`;
const QUEUE = "kernellivepatch";
const WORKERS = 4;

/** Timings with production defaults; tests shorten them. */
export interface ControllerTimings {
  /** Every API call but watches gives up after this long (default 60 s). */
  readonly requestTimeoutMs?: number;
  /** Each cache relists this often even when its watch looks healthy (default 10 min). */
  readonly relistMs?: number;
  /** A cache whose list-watch made no progress this long is restarted (default 5 min). */
  readonly staleMs?: number;
  /** Server-side timeout of each watch request (default 300 s). */
  readonly watchTimeoutSeconds?: number;
}

export interface ControllerDeps {
  readonly kc: KubeConfig;
  readonly cfg: OperatorConfig;
  readonly log: Logger;
  readonly metrics: OperatorMetrics;
  readonly events: EventRecorder;
  readonly now?: () => Date;
  readonly timings?: ControllerTimings;
}

export class Controller {
  private readonly queue: WorkQueue;
  private readonly patches: Informer<KubernetesObject>;
  private readonly nodes: Informer<V1Node>;
  private readonly daemonSets: Informer<V1DaemonSet>;
  private readonly patchClient: PatchClient;
  private readonly apps: AppsV1Api;
  private readonly now: () => Date;
  private resync: NodeJS.Timeout | undefined;
  private synced = false;
  private stopped = false;

  constructor(private readonly deps: ControllerDeps) {
    const { cfg, metrics, log } = deps;
    const t = deps.timings ?? {};
    this.now = deps.now ?? (() => new Date());
    const q = { name: QUEUE, controller: QUEUE };
    this.queue = new WorkQueue({
      observer: {
        depth: (d) => metrics.workqueueDepth.set(q, d),
        added: () => metrics.workqueueAdds.inc(q),
        retried: () => metrics.workqueueRetries.inc(q),
        queued: (s) => metrics.workqueueQueueDuration.observe(q, s),
        worked: (s) => metrics.workqueueWorkDuration.observe(q, s),
      },
    });
    const kc = timedKubeConfig(deps.kc, t.requestTimeoutMs ?? 60_000);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.patchClient = new PatchClient(custom);
    const watch = new Watch(kc);
    const informer = <T extends KubernetesObject>(name: string, path: string, list: InformerOptions<T>["list"], labelSelector?: string) =>
      new Informer<T>({
        name,
        path,
        list,
        watch,
        log,
        ...(labelSelector ? { labelSelector } : {}),
        ...(t.relistMs !== undefined ? { relistMs: t.relistMs } : {}),
        ...(t.staleMs !== undefined ? { staleMs: t.staleMs } : {}),
        ...(t.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: t.watchTimeoutSeconds } : {}),
        onRelist: (cause) => metrics.informerRelists.inc({ resource: name, cause }),
      });
    this.patches = informer("kernellivepatches", `/apis/${GROUP}/${VERSION}/${PLURAL}`, () => this.patchClient.list() as never);
    this.nodes = informer("nodes", "/api/v1/nodes", () => core.listNode());
    const selector = Object.entries(AGENT_LABELS).map(([k, v]) => `${k}=${v}`).join(",");
    this.daemonSets = informer(
      "daemonsets",
      `/apis/apps/v1/namespaces/${cfg.KLP_NAMESPACE}/daemonsets`,
      () => this.apps.listNamespacedDaemonSet({ namespace: cfg.KLP_NAMESPACE, labelSelector: selector }),
      selector,
    );
    metrics.maxConcurrentReconciles.set({ controller: QUEUE }, WORKERS);
    metrics.samplers.queue = { labels: q, sample: () => this.queue.sample() };
  }

  get ready(): boolean {
    return this.synced;
  }

  /** False when a reconcile has run for more than 5 minutes: the workers are wedged. */
  get live(): boolean {
    return this.queue.sample().longestRunningSeconds < 300;
  }

  async start(): Promise<void> {
    const { log } = this.deps;
    const onPatch = (obj: KubernetesObject) => {
      this.queue.add(`patch/${obj.metadata?.name}`);
      this.queue.add(DAEMONSET_KEY);
    };
    const onNode = () => this.enqueueAll();
    for (const verb of ["add", "update", "delete"] as const) {
      this.patches.on(verb, onPatch);
      this.nodes.on(verb, onNode);
      this.daemonSets.on(verb, () => this.queue.add(DAEMONSET_KEY));
    }
    await Promise.all([this.patches.start(), this.nodes.start(), this.daemonSets.start()]);
    if (this.stopped) return;
    this.synced = true;
    this.resync = setInterval(() => this.enqueueAll(), this.deps.cfg.KLP_RESYNC_SECONDS * 1000);
    this.enqueueAll();
    log.info("controller started");
    void this.queue.run((key) => this.reconcile(key), WORKERS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resync) clearInterval(this.resync);
    this.queue.stop();
    this.patches.stop();
    this.nodes.stop();
    this.daemonSets.stop();
  }

  private enqueueAll(): void {
    for (const p of this.patches.list()) this.queue.add(`patch/${p.metadata?.name}`);
    this.queue.add(DAEMONSET_KEY);
  }

  private async reconcile(key: string): Promise<{ requeueAfterMs?: number | undefined } | void> {
    const { metrics } = this.deps;
    const controller = key === DAEMONSET_KEY ? "agent-daemonset" : "kernellivepatch";
    const end = metrics.reconcileTime.startTimer({ controller });
    metrics.activeWorkers.inc({ controller });
    try {
      const r = key === DAEMONSET_KEY ? await this.reconcileDaemonSet() : await this.reconcilePatch(key.slice("patch/".length));
      metrics.reconcileTotal.inc({ controller, result: r?.requeueAfterMs !== undefined ? "requeue_after" : "success" });
      return r;
    } catch (err) {
      metrics.reconcileTotal.inc({ controller, result: "error" });
      metrics.reconcileErrors.inc({ controller });
      this.deps.log.warn({ err, key }, "reconcile failed; will retry");
      throw err;
    } finally {
      metrics.activeWorkers.dec({ controller });
      end();
    }
  }

  private parsedPatches(): KernelLivePatch[] {
    return this.patches.list().flatMap((raw) => {
      const r = KernelLivePatch.safeParse(raw);
      if (!r.success) this.deps.log.error({ patch: raw.metadata?.name, issues: r.error.issues }, "cannot parse KernelLivePatch");
      return r.success ? [r.data] : [];
    });
  }

  private targetedNodes(patch: KernelLivePatch): Set<string> {
    const global = this.deps.cfg.KLP_AGENT_NODE_SELECTOR;
    return new Set(
      this.nodes
        .list()
        .filter((n) => {
          const labels = n.metadata?.labels ?? {};
          return selectorMatches(patch.spec.nodeSelector, labels) && selectorMatches({ matchLabels: global }, labels);
        })
        .map((n) => n.metadata!.name!),
    );
  }

  private existingNodes(): Set<string> {
    return new Set(this.nodes.list().map((n) => n.metadata!.name!));
  }

  private async reconcilePatch(name: string): Promise<{ requeueAfterMs?: number | undefined } | void> {
    const raw = this.patches.get(name);
    if (!raw) {
      removePatchGauges(this.deps.metrics, name);
      return;
    }
    const parsed = KernelLivePatch.safeParse(raw);
    if (!parsed.success) {
      this.deps.log.error({ patch: name, issues: parsed.error.issues }, "cannot parse KernelLivePatch");
      return;
    }
    const patch = parsed.data;
    const log = this.deps.log.child({ patch: name });
    const generation = patch.metadata.generation ?? 0;
    const deleting = patch.metadata.deletionTimestamp !== undefined;
    const finalizers = patch.metadata.finalizers ?? [];
    const entries = patch.status?.nodes ?? [];
    const existing = this.existingNodes();
    const targeted = this.targetedNodes(patch);
    const now = this.now();

    // The decisions are pure; the gauges show them whatever write follows.
    const byNode = new Map<string, NodeEntry>(entries.map((e) => [e.nodeName, e]));
    const admitted = admit({ generation, spec: patch.spec, targeted: [...targeted], entries: byNode, previous: patch.status?.rollout, now });
    const rolled = rollup({ generation, spec: patch.spec, targeted, entries, halted: admitted.rollout.halted, deleting });
    const ready = rolled.conditions.find((c) => c.type === "Ready")?.status === "True";
    setPatchGauges(this.deps.metrics, name, patchGauges(entries, targeted, ready, admitted.rollout.halted));

    if (deleting) {
      if (!finalizers.includes(FINALIZER)) return;
      const { done, waitingFor } = unloadComplete(entries, existing);
      if (done) {
        await this.patchClient.setFinalizers(patch, finalizers.filter((f) => f !== FINALIZER));
        this.deps.events.patchEvent({ name, uid: patch.metadata.uid }, "Normal", "Unloaded", "Unloaded from every node; finalizer removed");
        log.info("unloaded everywhere; finalizer removed");
        return;
      }
      log.debug({ waitingFor }, "waiting for agents to unload");
    } else if (!finalizers.includes(FINALIZER)) {
      await this.patchClient.setFinalizers(patch, [...finalizers, FINALIZER]);
      return; // the update event brings us back with the new resourceVersion
    }

    const stale = staleEntries(entries, existing, targeted);
    if (stale.length > 0) {
      await this.patchClient.removeEntries(patch, stale);
      log.info({ nodes: stale }, "removed entries of nodes that are gone or no longer targeted");
      return;
    }

    const status: Omit<KernelLivePatchStatus, "nodes"> = {
      observedGeneration: generation,
      conditions: mergeConditions(patch.status?.conditions, rolled.conditions, now),
      summary: rolled.summary,
      rollout: admitted.rollout,
    };
    const before = patch.status;
    if (JSON.stringify(controllerPart(before)) !== JSON.stringify(status)) {
      await this.patchClient.applyStatus(name, status);
      this.announce(patch, before, status);
      if (admitted.newlyAdmitted.length > 0) log.info({ nodes: admitted.newlyAdmitted }, "admitted nodes");
    }
    return admitted.requeueAfterMs !== undefined ? { requeueAfterMs: admitted.requeueAfterMs + 100 } : undefined;
  }

  private announce(patch: KernelLivePatch, before: KernelLivePatchStatus | undefined, after: Omit<KernelLivePatchStatus, "nodes">): void {
    const was = (t: string) => before?.conditions?.find((c) => c.type === t);
    const is = (t: string) => after.conditions?.find((c) => c.type === t);
    const ref = { name: patch.metadata.name, uid: patch.metadata.uid };
    const ready = is("Ready");
    if (ready?.status === "True" && was("Ready")?.status !== "True") this.deps.events.patchEvent(ref, "Normal", "RolloutComplete", ready.message);
    if (after.rollout?.halted && !before?.rollout?.halted)
      this.deps.events.patchEvent(ref, "Warning", "RolloutHalted", is("Degraded")?.message ?? "failure threshold reached");
  }

  private async reconcileDaemonSet(): Promise<void> {
    const { cfg, log } = this.deps;
    const patches = this.parsedPatches();
    const existing = this.existingNodes();
    const clean = new Set(["Unloaded", "NotApplicable", "Pending"]);
    const stillToClean = patches.flatMap((p) => {
      const targeted = this.targetedNodes(p);
      return (p.status?.nodes ?? []).filter((e) => existing.has(e.nodeName) && !targeted.has(e.nodeName) && !clean.has(e.phase)).map((e) => e.nodeName);
    });
    const desired = desiredAgentDaemonSet(patches, cfg, stillToClean);
    const current = this.daemonSets.get(cfg.KLP_AGENT_DAEMONSET, cfg.KLP_NAMESPACE);
    if (!desired) {
      if (current) {
        await this.apps.deleteNamespacedDaemonSet({ name: cfg.KLP_AGENT_DAEMONSET, namespace: cfg.KLP_NAMESPACE }).catch(ignore404);
        log.info("no KernelLivePatch left; agent DaemonSet deleted");
      }
      return;
    }
    const hash = createHash("sha256").update(JSON.stringify(desired)).digest("hex").slice(0, 16);
    if (current?.metadata?.annotations?.[SPEC_HASH] === hash) return;
    desired.metadata!.annotations = { [SPEC_HASH]: hash };
    await this.apps.patchNamespacedDaemonSet(
      { name: cfg.KLP_AGENT_DAEMONSET, namespace: cfg.KLP_NAMESPACE, body: desired, fieldManager: OPERATOR_FIELD_MANAGER, force: true },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    );
    log.info({ hash, created: !current }, "agent DaemonSet applied");
  }
}

function controllerPart(s: KernelLivePatchStatus | undefined): Omit<KernelLivePatchStatus, "nodes"> {
  return { observedGeneration: s?.observedGeneration, conditions: s?.conditions, summary: s?.summary, rollout: s?.rollout };
}

function ignore404(err: unknown): void {
  if ((err as { code?: number }).code !== 404) throw err;
}
