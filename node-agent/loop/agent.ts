/**
 * The agent loop on one node: every pass reads the host, decides per patch (plan.ts), runs at most
 * one host action, writes this node's entries, and goes again until nothing is left to do. Passes
 * never overlap, so host operations on the node run one at a time, and patches are taken in
 * creation order, so the order never depends on when watch events arrived.
 *
 * It never unloads because it is stopping: a patch's life does not follow the agent's.
 */
import type { Logger } from "pino";
import { loadReleasePatternEngine, moduleForRelease, releasePatternEngineLoaded, usesReleasePattern } from "../../crds/module-for-release.ts";
import { transitionAllowed } from "../../crds/phases.ts";
import type { NodeEntry, NodePhase, PatchModule } from "../../crds/schema.ts";
import type { RecordedModule } from "../host/agent-record.ts";
import type { HostDriver } from "../host/driver.ts";
import { isHostError } from "../host/host-error.ts";
import type { HostState } from "../host/inspect.ts";
import type { CrashPoint } from "../config.ts";
import type { AgentMetrics } from "./agent-metrics.ts";
import { patchFacts } from "./patch-facts.ts";
import type { LoopState } from "./health.ts";
import { entryOf } from "./entry-of.ts";
import { OwnWrites, sameEntry } from "./own-writes.ts";
import { ORPHAN_KEY, orphanPlan } from "./orphans.ts";
import { fetchedView, heldView, viewOf, type ViewInput } from "./patch-view.ts";
import { decide, previousModule, replacedEntry, type Action, type EntryUpdate, type HostView, type ModuleRef, type PatchView } from "./plan.ts";
import { patchKey, ProjectedPatch } from "./projected-patch.ts";
import { HOST_RETRY, RetrySchedule, SOURCE_RETRY } from "./retry-schedule.ts";
import { SourceUnavailable, type ModuleSources } from "./sources.ts";

/** The agent's view of the API: what it reads arrives through `update*`; these are its writes. */
export interface AgentApi {
  /** Resolves to the patch's resourceVersion after the write, when the server says it. */
  applyEntry(patch: string, entry: NodeEntry): Promise<string | undefined | void>;
  event(patch: { name: string; uid?: string | undefined }, type: "Normal" | "Warning", reason: string, message: string): void;
}

export interface AgentDeps {
  readonly nodeName: string;
  readonly driver: HostDriver;
  readonly api: AgentApi;
  readonly sources: ModuleSources;
  readonly log: Logger;
  /** The clock of every decision and timestamp (default: the system clock). */
  readonly now?: () => Date;
  /** The jitter of retry delays, uniform in [0, 1) (default: Math.random). */
  readonly random?: () => number;
  /** Re-read the host this often even without API events (default 60 s). */
  readonly resyncMs?: number;
  /** Observer for tests and metrics: called after each host action. */
  readonly onAction?: (patch: string, action: Action, outcome: "ok" | string) => void;
  readonly metrics?: AgentMetrics;
  /** Called when a run of passes ends and the agent has nothing left to do for now. */
  readonly onIdle?: () => void;
  /** Test-only fault injection: called at each crash point; the test's hook kills the process. */
  readonly crashAt?: (point: CrashPoint) => void;
}

interface Resolved {
  readonly name: string;
  readonly buildId: string;
  bytes: Uint8Array | undefined;
}

export class Agent {
  /**
   * The node object's projected patches, in creation order, each with this node's entry as the
   * agent judged it on delivery (own-writes.ts) and as it was delivered.
   */
  private patches: HeldPatch[] = [];
  /** The patches of the pass that runs (markReplaced writes through them). */
  private passPatches: readonly ProjectedPatch[] = [];
  /** The patches came from the node's object: a patch absent from them is gone (not just unknown). */
  private patchesComplete = false;
  /** The agent's record on the host (read once at start). */
  private record: Map<string, RecordedModule> | undefined;
  private labels: Record<string, string> | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private retries = 0;
  /** When each failed operation (and each unreachable source) may be tried again. */
  private readonly schedule = new RetrySchedule();
  /** Module name (and bytes until installed) per digest, so a file is fetched once. */
  private readonly resolved = new Map<string, Resolved>();
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly random: () => number;
  /**
   * This node's entries as the agent wrote them, per patch: a watch event older than a write
   * still carries the entry from before it (read-your-writes, or the agent would write the same
   * entry twice).
   */
  private readonly ownWrites = new OwnWrites();
  /** Temporary files of interrupted stagings removed (once, before the first pass). */
  private swept = false;
  /** When the last pass finished (epoch ms; 0: none yet). */
  lastPassAt = 0;
  /** When the run of passes in progress started (epoch ms; undefined: idle). */
  busySince: number | undefined;

  constructor(private readonly deps: AgentDeps) {
    this.log = deps.log;
    this.now = deps.now ?? (() => new Date());
    this.random = deps.random ?? Math.random;
  }

  /**
   * The projected patches of the node's object (node-channel.ts), on every change of it;
   * `fromObject` false: the object does not exist, so nothing can be said of patches.
   */
  updatePatches(objects: Iterable<unknown>, fromObject = true): void {
    const raw = [...objects];
    if (!releasePatternEngineLoaded() && raw.some((o) => usesReleasePattern((o as { patch?: { spec?: unknown } }).patch?.spec))) {
      // The RE2 engine costs every agent memory: it is loaded only once a patch uses a pattern.
      loadReleasePatternEngine().then(
        () => this.updatePatches(raw, fromObject),
        (err: unknown) => this.log.error({ err }, "could not load the kernelReleasePattern engine"),
      );
      return;
    }
    this.patchesComplete = fromObject;
    const parsed: HeldPatch[] = [];
    for (const object of raw) {
      const r = ProjectedPatch.safeParse(object);
      if (r.success) parsed.push({ ...r.data, entry: this.ownWrites.entryFor(patchKey(r.data.patch), r.data.entry, r.data.resourceVersion), delivered: r.data.entry });
      else this.log.warn({ patch: (object as { patch?: { name?: string } }).patch?.name, issues: r.error.issues.slice(0, 3) }, "ignoring a projected patch the agent cannot parse");
    }
    const present = new Set(parsed.map((p) => patchKey(p.patch)));
    this.ownWrites.retain((k) => present.has(k));
    // Orphans' schedules go with their record (cleanOrphans), not with the patches.
    this.schedule.retain((key) => key.startsWith(ORPHAN_KEY) || present.has(key.slice(0, key.indexOf(" "))));
    const digests = new Set(parsed.flatMap((p) => p.patch.spec.modules.map((m) => m.sha256)));
    for (const sha of this.resolved.keys()) if (!digests.has(sha)) this.resolved.delete(sha);
    this.patches = parsed.sort(byCreation);
    this.kick();
  }

  /**
   * The Node's labels; undefined once the Node object is gone. An agent whose Node was deleted
   * holds still: it writes no entry for a node that does not exist (the controller removes the
   * entries of deleted nodes) until a Node of that name exists again.
   */
  updateNode(labels: Record<string, string> | undefined): void {
    if (labels === undefined && this.labels !== undefined) this.log.warn("the Node object is gone; holding still until it is back");
    this.labels = labels;
    this.kick();
  }

  /** Schedules a pass; coalesces with one in progress. */
  kick(): void {
    if (this.stopped || this.labels === undefined) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    this.running = this.passes().finally(() => (this.running = undefined));
  }

  /** What the liveness and readiness probes judge. */
  loopState(): LoopState {
    return {
      nodeKnown: this.labels !== undefined,
      lastPassAt: this.lastPassAt,
      busySince: this.busySince,
      maxTransitionSeconds: Math.max(75, ...this.patches.map((p) => p.patch.spec.transitionTimeoutSeconds)),
    };
  }

  /** Lets the current host operation finish, then stops. Nothing is unloaded. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** Resolves when no pass is running (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /**
   * The next retry delay: `baseMs` doubling with each consecutive failure up to a minute, then
   * between half and all of it, so the agents of a fleet that failed together (an API server that
   * timed them all out) do not come back together.
   */
  private backoffMs(baseMs: number): number {
    const ms = Math.min(60_000, baseMs * 2 ** this.retries++);
    return Math.round(ms / 2 + this.random() * (ms / 2));
  }

  private later(ms: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), ms);
    this.timer.unref?.();
  }

  private async passes(): Promise<void> {
    let wakeIn = this.deps.resyncMs ?? 60_000;
    this.busySince = this.now().getTime();
    try {
      if (!this.swept) {
        // Before any write of its own: what a killed predecessor left half-written goes.
        await this.deps.driver.sweepTemporaries();
        this.record = new Map(await this.deps.driver.readRecord());
        this.swept = true;
      }
      for (let i = 0; i < 1000 && !this.stopped && this.labels !== undefined; i++) {
        this.dirty = false;
        const r = await this.pass();
        this.lastPassAt = this.now().getTime();
        this.deps.metrics?.pass(true, this.now());
        if (r.waitMs !== undefined) wakeIn = Math.min(wakeIn, r.waitMs);
        if (!r.acted && !this.dirty) break;
      }
      this.retries = 0;
    } catch (err) {
      this.deps.metrics?.pass(false, this.now());
      wakeIn = this.backoffMs(1000);
      this.log.warn({ err, retryInMs: wakeIn }, "agent pass failed; retrying");
    }
    this.busySince = undefined;
    this.later(wakeIn);
    this.deps.onIdle?.();
  }

  /** One pass: read, decide, at most one action, write. */
  private async pass(): Promise<{ acted: boolean; waitMs?: number | undefined }> {
    const [host, preflight] = await Promise.all([this.deps.driver.inspect(), this.deps.driver.preflight()]);
    this.deps.metrics?.hostRead(host);
    const labels = this.labels; // as for the patches below: one set for the whole pass
    if (labels === undefined) return { acted: false }; // the Node went away meanwhile
    const now = this.now().getTime();
    const hostView: HostView = {
      bootId: host.bootId,
      now,
      livepatches: host.livepatches,
      modules: host.modules,
      installed: host.installed.filter((i) => i.running),
      blockers: preflight.blockers,
    };
    // The patches as this pass found them: a delivery during one of its awaits replaces
    // this.patches, and views[i] must stay the view of patches[i] (a mismatch once acted on one
    // patch with another's module: the refused module's check failed as a host operation).
    // Each entry judged again against the agent's own writes as they stand now: a write that was
    // in flight when its predecessor's version was delivered late may have been answered since,
    // and then that version is older than what the agent wrote (seen on a saturated API server:
    // the same Loaded entry written twice).
    const patches: ProjectedPatch[] = this.patches.map(({ delivered, ...p }) => ({ ...p, entry: this.ownWrites.entryFor(patchKey(p.patch), delivered, p.resourceVersion) }));
    this.passPatches = patches;
    const views: PatchView[] = [];
    const writes: Array<Promise<unknown>> = [];
    const input: ViewInput = {
      nodeName: this.deps.nodeName,
      labels,
      host,
      known: (sha256) => this.resolved.get(sha256),
      dueInMs: (key, at) => this.schedule.dueInMs(key, at),
      now,
    };
    for (const p of patches) {
      const view = await this.view(p, input);
      const failure = view.failure;
      if (failure) {
        // The module was refused before any host action (digest, vermagic, source): say so on
        // the patch and the Node once, when the entry changes, not on every retry.
        const announce = (written: boolean) => {
          if (written) this.deps.api.event(ref(p), "Warning", failure.reason ?? "Failed", `${this.deps.nodeName}: ${failure.message}`);
        };
        const previousModuleName = "module" in view.view.want ? previousModule(view.view.entry, view.view.want.module.name) : undefined;
        writes.push(this.write(p, view.view.entry, { ...failure, previousModuleName }, host).then(announce));
      }
      views.push(view.view);
    }
    this.showPatches(views, host);
    let waitMs: number | undefined;
    let acted = false;
    const orphan = await this.cleanOrphans(patches, hostView, host.kernelRelease, now);
    if (orphan.acted) acted = true;
    if (orphan.waitMs !== undefined) waitMs = orphan.waitMs;
    for (const [i, view] of views.entries()) {
      const patch = patches[i]!;
      const d = decide(view, hostView, views);
      if (d.kind === "report") writes.push(this.write(patch, view.entry, d.entry, host));
      if (d.kind === "wait") {
        writes.push(this.write(patch, view.entry, d.entry, host));
        waitMs = Math.min(waitMs ?? Infinity, d.ms);
      }
      // A stopping agent starts no new host operation (its successor may already be starting).
      if (d.kind === "act" && !acted && !this.stopped) {
        // An operation that failed before waits for its turn; the entry says what it said.
        const dueIn = this.schedule.dueInMs(retryKey(patch, d.action), now);
        if (dueIn > 0) {
          waitMs = Math.min(waitMs ?? Infinity, dueIn);
          continue;
        }
        acted = true;
        await Promise.all(writes.splice(0));
        if (d.before) await this.write(patch, view.entry, d.before, host);
        if (d.action.op === "install" || d.action.op === "installAndLoad") await this.remember(d.action.module, patch);
        await this.act(patch, view, d.action, host, views);
      }
    }
    await Promise.all(writes);
    return { acted, waitMs };
  }

  /** The per-patch metrics (patch-facts.ts) from this pass's views and host read. */
  private showPatches(views: readonly PatchView[], host: HostState): void {
    this.deps.metrics?.patches(patchFacts(views, host.livepatches));
  }

  /** Records, before it reaches the host, which patch a module belongs to (agent-record.ts). */
  private async remember(m: ModuleRef, p: ProjectedPatch): Promise<void> {
    const owner = { patch: p.patch.name, uid: patchKey(p.patch), sha256: m.sha256 };
    const known = this.record?.get(m.name);
    if (known && known.uid === owner.uid && known.sha256 === owner.sha256) return;
    (this.record ??= new Map()).set(m.name, owner);
    await this.deps.driver.writeRecord(this.record);
  }

  /**
   * Modules the record gives to a patch the node's object no longer lists (deleted while the
   * node could not answer) come off the host, one host operation per pass like any other, on
   * their own retry schedule (orphans.ts decides). Records of modules that are nowhere on the
   * host any more go.
   */
  private async cleanOrphans(patches: readonly ProjectedPatch[], host: HostView, kernelRelease: string, now: number): Promise<{ acted: boolean; waitMs?: number }> {
    if (!this.record) return { acted: false };
    const plan = orphanPlan({
      record: this.record,
      owners: new Set(patches.map((p) => patchKey(p.patch))),
      host,
      mayAct: !this.stopped && this.patchesComplete,
      dueInMs: (key, at) => this.schedule.dueInMs(key, at),
      now,
    });
    for (const name of plan.forget) {
      this.record.delete(name);
      this.schedule.succeeded(`${ORPHAN_KEY}${name}`);
    }
    const step = plan.step;
    if (step) {
      const { name, owner, action, key } = step;
      try {
        if (action.op === "unload") await this.deps.driver.unload(name);
        else if (action.op === "removeLeftover") await this.deps.driver.removeLeftover(name);
        else await this.deps.driver.uninstall(name, kernelRelease);
        this.schedule.succeeded(key);
        this.log.warn({ module: name, patch: owner.patch, op: action.op }, "removed a module of a patch that is gone");
      } catch (err) {
        this.later(this.schedule.failed(key, HOST_RETRY, now, this.random()));
        this.log.warn({ module: name, patch: owner.patch, op: action.op, err: (err as Error).message }, "could not remove a module of a patch that is gone");
      }
    }
    if (plan.forget.length > 0) await this.deps.driver.writeRecord(this.record);
    return { acted: step !== undefined, ...(plan.waitMs === undefined ? {} : { waitMs: plan.waitMs }) };
  }

  /** The decision's input for one patch (patch-view.ts); reads the module's file when it must. */
  private async view(p: ProjectedPatch, input: ViewInput): Promise<{ view: PatchView; failure?: EntryUpdate }> {
    const step = viewOf(p, input);
    if (step.kind === "view") return { view: step.view };
    try {
      const r = await this.resolve(step.module, input.host.kernelRelease);
      this.schedule.succeeded(step.sourceKey);
      return { view: fetchedView(step, r) };
    } catch (err) {
      // Hold still (nothing new is admitted to happen) and report why; a failure that may pass
      // (an unreachable source) is tried again on its own schedule, never in a loop.
      const failure = this.failureOf(err, step.module.sha256);
      if (failure.sha256 === undefined) this.later(this.schedule.failed(step.sourceKey, SOURCE_RETRY, input.now, this.random()));
      return { view: heldView(step), failure };
    }
  }

  private async resolve(m: PatchModule, kernelRelease: string): Promise<Resolved> {
    const cached = this.resolved.get(m.sha256);
    if (cached?.bytes) return cached;
    // At most one module file in memory (the agent's memory limit is sized for one, see
    // operator/config.ts): the others keep their name and build-id and are fetched again to load.
    for (const other of this.resolved.values()) other.bytes = undefined;
    const bytes = await this.deps.sources.fetch(m);
    const verified = this.deps.driver.verify(bytes, {
      sha256: m.sha256,
      kernelRelease,
      ...(m.moduleName ? { moduleName: m.moduleName.replace(/-/g, "_") } : {}),
    });
    const r = { name: verified.name, buildId: verified.buildId, bytes };
    this.resolved.set(m.sha256, r);
    return r;
  }

  /**
   * The entry a failure of one patch's operation becomes: never thrown out of the pass, so the
   * agent's other patches (their unloads included) go on. A failure without a digest is not
   * final: it is retried on its schedule.
   */
  private failureOf(err: unknown, sha256: string): EntryUpdate {
    if (err instanceof SourceUnavailable) {
      return { phase: "Failed", reason: "SourceUnavailable", message: err.message };
    }
    if (isHostError(err)) {
      const stalled = err.reason === "TransitionStalled";
      return {
        phase: stalled ? "Stalled" : "Failed",
        sha256,
        reason: err.reason,
        message: err.message,
        stalledTasks: stalled ? err.details?.stalledTasks?.slice(0, 32).map((t) => ({ pid: t.pid, comm: t.comm })) : undefined,
      };
    }
    this.log.error({ err }, "unexpected failure of a patch's operation");
    return { phase: "Failed", reason: "AgentError", message: `the agent failed unexpectedly: ${String((err as Error)?.message ?? err).slice(0, 512)}` };
  }

  private async act(patch: ProjectedPatch, view: PatchView, action: Action, host: HostState, views: readonly PatchView[]): Promise<void> {
    const { driver } = this.deps;
    const log = this.log.child({ patch: patch.patch.name, op: action.op });
    const timeout = { transitionTimeoutMs: patch.patch.spec.transitionTimeoutSeconds * 1000 };
    const started = this.now().getTime();
    const crash = (point: CrashPoint) => this.deps.crashAt?.(point);
    try {
      switch (action.op) {
        case "install":
          crash("before-stage");
          if (!(await driver.persistLoaded(action.module.name, host.kernelRelease, action.module.sha256))) {
            await this.install(patch, action.module, host.kernelRelease);
          }
          crash("after-stage");
          break;
        case "installAndLoad": {
          crash("before-stage");
          const bytes = await this.moduleBytes(patch, host.kernelRelease);
          const m = { kernelRelease: host.kernelRelease, name: action.module.name, sha256: action.module.sha256 };
          const r = await driver.loadVerified(bytes, m, timeout, () => crash("after-stage"));
          crash("after-load");
          log.info({ module: action.module.name, replaced: r.replaced, transitionMs: r.transitionMs }, "loaded");
          const replacing = r.replaced.length ? `, replacing ${r.replaced.join(", ")}` : "";
          this.deps.api.event(ref(patch), "Normal", "Loaded", `${action.module.name} loaded on ${this.deps.nodeName} in ${r.transitionMs} ms${replacing}`);
          await this.markReplaced(r.replaced, patch.patch.name, views, host);
          break;
        }
        case "unload":
          crash("before-unload");
          await driver.unload(action.name, timeout);
          crash("after-unload");
          log.info({ module: action.name }, "unloaded");
          this.deps.api.event(ref(patch), "Normal", "Unloaded", `${action.name} unloaded on ${this.deps.nodeName}`);
          break;
        case "removeLeftover":
          await driver.removeLeftover(action.name);
          log.info({ module: action.name }, "removed leftover module");
          break;
        case "uninstall":
          await driver.uninstall(action.name, host.kernelRelease);
          log.info({ module: action.name }, "uninstalled");
          break;
      }
      this.schedule.succeeded(retryKey(patch, action));
      this.deps.onAction?.(patch.patch.name, action, "ok");
      this.deps.metrics?.hostOperation(action.op, "success", (this.now().getTime() - started) / 1000);
    } catch (err) {
      const sha = "module" in action ? action.module.sha256 : (view.entry?.sha256 ?? "");
      const failure = this.failureOf(err, sha);
      const at = this.now().getTime();
      this.later(this.schedule.failed(retryKey(patch, action), HOST_RETRY, at, this.random()));
      const target = "module" in action ? action.module.name : action.name;
      log.warn({ reason: failure.reason, err: (err as Error).message, ms: at - started }, "host operation failed");
      this.deps.api.event(ref(patch), "Warning", failure.reason ?? "Failed", `${this.deps.nodeName}: ${failure.message}`);
      this.deps.onAction?.(patch.patch.name, action, failure.reason ?? "Failed");
      this.deps.metrics?.hostOperation(action.op, failure.reason ?? "Failed", (at - started) / 1000);
      const fresh = await this.deps.driver.inspect().catch(() => host);
      await this.write(patch, view.entry, { ...failure, ...failedModules(view, target) }, fresh);
    }
  }

  /** The module file for this node, read once; the agent keeps no copy after handing it over. */
  private async moduleBytes(patch: ProjectedPatch, kernelRelease: string): Promise<Uint8Array> {
    const spec = moduleForRelease(patch.patch.spec.modules, kernelRelease)!;
    const r = await this.resolve(spec, kernelRelease);
    const bytes = r.bytes ?? (await this.deps.sources.fetch(spec));
    r.bytes = undefined; // on the host from now on: not in the agent's memory
    return bytes;
  }

  private async install(patch: ProjectedPatch, m: ModuleRef, kernelRelease: string): Promise<void> {
    const bytes = await this.moduleBytes(patch, kernelRelease);
    await this.deps.driver.install(bytes, { kernelRelease, name: m.name, sha256: m.sha256, overwrite: true });
  }

  /** After an atomic replace, say so on the replaced patches' entries (they must not load back). */
  private async markReplaced(replacedModules: readonly string[], by: string, views: readonly PatchView[], host: HostState): Promise<void> {
    for (const moduleName of replacedModules) {
      const victim = views.find((v) => v.name !== by && (v.entry?.moduleName === moduleName || ("module" in v.want && v.want.module.name === moduleName)));
      if (!victim) continue;
      const patch = this.passPatches.find((p) => p.patch.name === victim.name);
      if (!patch) continue;
      const fresh = await this.deps.driver.inspect().catch(() => host);
      const sha256 = "module" in victim.want ? victim.want.module.sha256 : (victim.entry?.sha256 ?? "");
      await this.write(patch, victim.entry, replacedEntry({ name: moduleName, sha256 }, by), fresh);
      // The view's entry is stale now; the next pass re-reads it from the watch.
      this.kick();
    }
  }

  /**
   * Writes this node's entry when it differs from what the patch's status already says.
   * Resolves true when it wrote (false: the entry already said this).
   */
  private async write(p: ProjectedPatch, current: NodeEntry | undefined, update: EntryUpdate, host: HostState): Promise<boolean> {
    const entry = entryOf(update, current, { nodeName: this.deps.nodeName, host, generation: p.patch.generation, now: this.now() });
    if (current && sameEntry(current, entry)) return false;
    // The phase this entry last had: a write earlier in this pass (the `before` of an operation)
    // is newer than the view's entry.
    checkPhaseChange(p.patch.name, (p.entry ?? current)?.phase, entry.phase, this.log, this.deps.metrics);
    await this.send(p, entry);
    // Remember what we wrote, so the same pass does not write it again before the watch catches up.
    p.entry = entry;
    this.log.debug({ patch: p.patch.name, phase: entry.phase }, "entry written");
    return true;
  }

  private async send(p: ProjectedPatch, entry: NodeEntry): Promise<void> {
    const key = patchKey(p.patch);
    this.ownWrites.writing(key, entry);
    try {
      const resourceVersion = await this.deps.api.applyEntry(p.patch.name, entry);
      this.ownWrites.written(key, entry, typeof resourceVersion === "string" ? resourceVersion : undefined);
      this.deps.metrics?.statusWrite(true);
    } catch (err) {
      this.ownWrites.failed(key);
      this.deps.metrics?.statusWrite(false);
      throw err;
    }
  }
}


/**
 * Checks a phase change against the allowed transitions (crds/phases.ts): one that is not allowed
 * is logged as an error and counted, never refused (the entry must say what the host says).
 * Returns whether it was allowed.
 */
export function checkPhaseChange(patch: string, from: NodePhase | undefined, to: NodePhase, log: Pick<Logger, "error">, metrics: Pick<AgentMetrics, "disallowedTransition"> | undefined): boolean {
  if (transitionAllowed(from, to)) return true;
  log.error({ patch, from: from ?? "none", to }, "phase transition not in the allowed transitions (crds/phases.ts); written anyway");
  metrics?.disallowedTransition(from ?? "none", to);
  return false;
}

/**
 * The module names a failed host operation's entry records: the module it acted on, and the
 * patch's previous module still to retire; when the operation was that retirement, the entry stays
 * about the current module and keeps naming the previous one.
 */
function failedModules(view: PatchView, target: string): { moduleName: string; previousModuleName: string | undefined } {
  const current = "module" in view.want ? view.want.module.name : undefined;
  if (current !== undefined && target !== current) return { moduleName: current, previousModuleName: target };
  const previous = current !== undefined ? previousModule(view.entry, current) : view.entry?.previousModuleName;
  return { moduleName: target, previousModuleName: previous === target ? undefined : previous };
}

/** Code-unit order: deterministic on every node (and no ICU collation data in the agent's memory). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A projected patch as delivered: `entry` as judged then, `delivered` as the node's object said it. */
type HeldPatch = ProjectedPatch & { readonly delivered: NodeEntry | undefined };

function byCreation(a: ProjectedPatch, b: ProjectedPatch): number {
  const ta = a.patch.creationTimestamp;
  const tb = b.patch.creationTimestamp;
  return ta === tb ? compare(a.patch.name, b.patch.name) : compare(ta, tb);
}

/** One operation of one patch, for its retry schedule (starts with the patch's key). */
function retryKey(p: ProjectedPatch, action: Action): string {
  return `${patchKey(p.patch)} ${action.op} ${"module" in action ? action.module.name : action.name}`;
}

function ref(p: ProjectedPatch): { name: string; uid?: string | undefined } {
  return { name: p.patch.name, uid: p.patch.uid };
}
