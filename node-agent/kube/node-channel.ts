/**
 * The agent's one channel to the API for its patches: its node's KernelLivePatchNode. The operator
 * writes there which patches concern the node (their spec, whether the node's turn has come); the
 * agent watches that one object (a field selector on its name, so it never receives another node's
 * traffic) and writes its entries into the object's status.
 *
 * The agent loop receives each projected patch as the operator wrote it, with this node's entry
 * for it and the object's resourceVersion (loop/projected-patch.ts); it parses them with the
 * schema's types.
 */
import type { Logger } from "pino";
import { API_VERSION, NODE_KIND, NODE_OBJECTS_PATH, NODE_PLURAL, ofThisPatch, type Condition, type NodeEntry, type NodePatchEntry } from "../../crds/schema.ts";
import type { AgentApi } from "../loop/agent.ts";
import type { ProjectedPatch } from "../loop/projected-patch.ts";
import { agentEvents, agentFieldManager, watchTuning, type WatchOptions } from "./agent-api.ts";
import { APPLY, type KubeHttp } from "../../kube/http-client.ts";
import { Watcher } from "./watcher.ts";
import { conditionWritten, withTransitionTimes, type AgentCondition } from "./policy-condition.ts";

/** A projected patch as the watch delivers it (unparsed: the agent parses each on its own). */
interface RawProjection {
  name: string;
  uid: string;
  [field: string]: unknown;
}

interface RawNodeObject {
  metadata?: { name?: string; resourceVersion?: string };
  spec?: { patches?: RawProjection[] };
  status?: { entries?: NodePatchEntry[]; conditions?: Condition[] };
}

export interface NodeChannel {
  /** The agent's writes: its entries (into the node object's status) and events. */
  readonly api: AgentApi;
  /**
   * Sets one of the agent's conditions on the node object, written with its entries (at once, or
   * once the object is first seen: before that the entries the write must carry are unknown).
   */
  reportCondition(condition: AgentCondition): void;
  /** Lists, then watches, with no one to receive the patches yet (so conditions can be written). */
  watch(): Promise<void>;
  /**
   * Lists, then watches (unless watching already); `onPatches` receives the projected patches at
   * once if known and on every change, and whether they come from the node's object (false: it
   * does not exist, so nothing can be said of patches).
   */
  start(onPatches: (patches: unknown[], fromObject: boolean) => void): Promise<void>;
  stop(): void;
}

/**
 * The node's object, watched: the projected patches on every change (none while the object does
 * not exist: the operator creates it once a patch concerns the node).
 */
export function nodeChannel(http: KubeHttp, nodeName: string, log: Logger, opts: WatchOptions = {}): NodeChannel {
  const writer = new EntryWriter(http, nodeName, log);
  let onPatches: ((patches: unknown[], fromObject: boolean) => void) | undefined;
  let latest: { patches: unknown[]; fromObject: boolean } | undefined;
  let watching: Promise<void> | undefined;
  const watcher = new Watcher(http, {
    path: NODE_OBJECTS_PATH,
    query: { fieldSelector: `metadata.name=${nodeName}` },
    transform: (o) => {
      const { managedFields: _, ...metadata } = (o as { metadata?: Record<string, unknown> }).metadata ?? {};
      return { ...(o as object), metadata };
    },
    onChange: (m) => {
      const obj = m.get(nodeName) as RawNodeObject | undefined;
      writer.observe(obj);
      latest = { patches: obj ? projectedPatches(obj) : [], fromObject: obj !== undefined };
      onPatches?.(latest.patches, latest.fromObject);
    },
    onError: (err) => log.warn({ err: (err as Error).message }, "KernelLivePatchNode watch interrupted; relisting"),
    ...watchTuning(NODE_PLURAL, opts),
  });
  const events = agentEvents(http, nodeName, log);
  const watch = (): Promise<void> => (watching ??= watcher.start());
  return {
    api: { applyEntry: (patch, entry) => writer.apply(patch, entry), event: events },
    reportCondition: (c) => writer.setCondition(c),
    watch,
    start: (f) => {
      onPatches = f;
      if (latest) f(latest.patches, latest.fromObject);
      return watch();
    },
    stop: () => watcher.stop(),
  };
}

/**
 * The projected patches as the agent loop reads them (loop/projected-patch.ts, unparsed): each
 * with this node's entry for it (not one left by an earlier patch of the same name) and the
 * object's version, which the agent's read-your-writes compares with its own writes'.
 */
export function projectedPatches(obj: RawNodeObject): Array<Omit<ProjectedPatch, "patch"> & { patch: RawProjection }> {
  const entries = obj.status?.entries ?? [];
  const resourceVersion = obj.metadata?.resourceVersion;
  return (obj.spec?.patches ?? []).map((patch) => {
    const own = entries.find((e) => e.patch === patch.name && ofThisPatch(e.patchUID, patch.uid));
    return { patch, ...(own ? { entry: entryOf(own) } : {}), ...(resourceVersion !== undefined ? { resourceVersion } : {}) };
  });
}

function entryOf(e: NodePatchEntry): NodeEntry {
  const { patch: _p, patchUID: _u, ...entry } = e;
  return entry;
}

/**
 * This node's entries, written as one set by server-side apply under the agent's field manager
 * (a field it stops sending is removed, so every write carries every entry). Writes never overlap:
 * one waits for the one in flight, and entries set meanwhile go out together in the next.
 */
class EntryWriter {
  /** Undefined until the object was first seen: the set starts from what is already written. */
  private entries: Map<string, NodePatchEntry> | undefined;
  private projected = new Map<string, string>();
  private inFlight: Promise<string | undefined> | undefined;
  private queued: Promise<string | undefined> | undefined;
  /** The agent's conditions, by type; none set, none sent (the field stays as it is). */
  private readonly conditions = new Map<string, AgentCondition>();
  /** The conditions on the object, as last seen or written: their transition times are kept. */
  private writtenConditions: Condition[] | undefined;

  constructor(
    private readonly http: KubeHttp,
    private readonly nodeName: string,
    private readonly log: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  observe(obj: RawNodeObject | undefined): void {
    this.projected = new Map((obj?.spec?.patches ?? []).map((p) => [p.name, p.uid]));
    if (!obj) return;
    const written = obj.status?.entries ?? [];
    this.entries ??= new Map(written.map((e) => [e.patch, e]));
    this.writtenConditions = obj.status?.conditions;
    // Entries of patches that no longer concern the node (deleted, or cleaned up elsewhere) go;
    // a condition set before the object existed (or lost since) is written.
    if ((written.some((e) => !this.projected.has(e.patch)) || !this.conditionsWritten()) && !this.queued) {
      this.flush().catch((err: unknown) => this.log.debug({ err: (err as Error).message }, "could not write the node object's status"));
    }
  }

  setCondition(condition: AgentCondition): void {
    this.conditions.set(condition.type, condition);
    // Before the object is seen, observe() writes it; a write already queued carries it.
    if (this.entries === undefined || this.conditionsWritten() || this.queued) return;
    this.flush().catch((err: unknown) => this.log.warn({ err: (err as Error).message, condition: condition.type }, "could not write a condition on the node object"));
  }

  private conditionsWritten(): boolean {
    return [...this.conditions.values()].every((c) => conditionWritten(c, this.writtenConditions));
  }

  /** Resolves to the node object's resourceVersion after the write that carried this entry. */
  apply(patch: string, entry: NodeEntry): Promise<string | undefined> {
    const uid = this.projected.get(patch);
    (this.entries ??= new Map()).set(patch, { ...entry, patch, ...(uid ? { patchUID: uid } : {}) });
    return this.flush();
  }

  private flush(): Promise<string | undefined> {
    if (this.queued) return this.queued;
    const before = this.inFlight ?? Promise.resolve(undefined);
    const next: Promise<string | undefined> = before
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        this.inFlight = next;
        return this.send();
      })
      .finally(() => {
        if (this.inFlight === next) this.inFlight = undefined;
      });
    this.queued = next;
    return next;
  }

  private async send(): Promise<string | undefined> {
    const entries = [...(this.entries?.values() ?? [])].filter((e) => this.projected.has(e.patch)).sort((a, b) => (a.patch < b.patch ? -1 : a.patch > b.patch ? 1 : 0));
    const conditions = this.conditions.size ? withTransitionTimes([...this.conditions.values()], this.writtenConditions, this.now()) : undefined;
    const written = await this.http.json<{ metadata?: { resourceVersion?: string } } | undefined>("PATCH", `${NODE_OBJECTS_PATH}/${encodeURIComponent(this.nodeName)}/status`, {
      query: { fieldManager: agentFieldManager(this.nodeName), force: true },
      contentType: APPLY,
      body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: this.nodeName }, status: { entries, summary: summaryOf(entries), ...(conditions ? { conditions } : {}) } },
    });
    if (conditions) this.writtenConditions = [...(this.writtenConditions ?? []).filter((w) => !this.conditions.has(w.type)), ...conditions];
    return written?.metadata?.resourceVersion;
  }
}

/** The longest summary the schema takes. */
export const SUMMARY_MAX = 4096;

/**
 * The entries in one line for `kubectl get klpn` (its columns show only a list's first value),
 * cut with a count of the rest so it always fits the schema's limit.
 */
export function summaryOf(entries: readonly NodePatchEntry[]): string {
  const parts = entries.map((e) => `${e.patch} ${e.phase}`);
  let text = parts.join(", ");
  for (let kept = parts.length - 1; text.length > SUMMARY_MAX && kept >= 0; kept--) {
    text = `${parts.slice(0, kept).join(", ")}${kept ? ", " : ""}and ${parts.length - kept} more`;
  }
  return text;
}
