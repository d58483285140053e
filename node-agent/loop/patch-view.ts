/**
 * The decision's input for one patch (plan.ts's PatchView), from what the agent has read: the
 * projected patch and this node's entry, the Node's labels, the host, what the agent already knows
 * of module files, and the source's retry schedule. Pure, with the clock passed in. When the
 * module's name or build can only come from its file, the answer says so (`fetch`), and the agent
 * fetches it (agent.ts) and finishes the view with `fetchedView` or `heldView`.
 */
import { selectorMatches } from "../../crds/label-selector.ts";
import { moduleForRelease } from "../../crds/module-for-release.ts";
import type { PatchModule } from "../../crds/schema.ts";
import type { InstalledModule } from "../host/kpatch-store.ts";
import { isFinalFailure, type PatchView, type Want } from "./plan.ts";
import { patchKey, type ProjectedPatch } from "./projected-patch.ts";

/** What the agent learnt from a module file it verified: kept per digest, so a file is read once. */
export interface KnownModule {
  readonly name: string;
  readonly buildId: string;
}

export interface ViewInput {
  readonly nodeName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly host: {
    readonly kernelRelease: string;
    readonly livepatches: ReadonlyArray<{ readonly name: string }>;
    /** Every staged module (`running`: staged for the running kernel release). */
    readonly installed: ReadonlyArray<Pick<InstalledModule, "name" | "sha256" | "running" | "buildId">>;
  };
  /** A verified file's name and build-id, by digest. */
  readonly known: (sha256: string) => KnownModule | undefined;
  /** Milliseconds until a source retry key may be tried again (0: now). */
  readonly dueInMs: (key: string, now: number) => number;
  readonly now: number;
}

export type ViewStep =
  | { readonly kind: "view"; readonly view: PatchView }
  /** The module's file must be read (its name, or its build to compare with a live one). */
  | { readonly kind: "fetch"; readonly module: PatchModule; readonly sourceKey: string; readonly unresolved: PatchView; readonly want: "loaded" | "staged" };

/** The retry-schedule key of a patch's module source. */
export function sourceKey(p: ProjectedPatch, sha256: string): string {
  return `${patchKey(p.patch)} source ${sha256}`;
}

export function viewOf(p: ProjectedPatch, input: ViewInput): ViewStep {
  const { patch, entry } = p;
  const admitted = patch.admitted;
  const base = { name: patch.name, generation: patch.generation, admitted, entry, soakSeconds: patch.spec.rollout.soakSeconds };
  const targets = selectorMatches(patch.spec.nodeSelector, input.labels);
  if (patch.deletionTimestamp || !targets || patch.spec.state === "Unloaded") return view({ ...base, want: { kind: "absent" } });
  const m = moduleForRelease(patch.spec.modules, input.host.kernelRelease);
  if (!m) return view({ ...base, want: { kind: "notApplicable" } });
  const kind = patch.spec.state === "Staged" ? "staged" : "loaded";
  const { name, buildId } = knownModule(p, m, input);
  // A livepatch of that name is live: its build must be compared with the file's, so read it.
  const liveNamed = name !== undefined && input.host.livepatches.some((lp) => lp.name === name);
  if (name && (buildId !== undefined || !liveNamed)) return view({ ...base, want: { kind, module: { name, sha256: m.sha256, buildId } } });
  // Nothing can happen before admission, and the name is only needed then; nor after a failure
  // that is final for this generation and digest (fetching the file again changes nothing).
  const unresolved: Want = { kind, module: { name: name ?? m.moduleName?.replace(/-/g, "_") ?? `sha256-${m.sha256.slice(0, 12)}`, sha256: m.sha256 } };
  if (!liveNamed && (!admitted || isFinalFailure(entry, patch.generation, m.sha256))) return view({ ...base, want: unresolved });
  const key = sourceKey(p, m.sha256);
  // A source that failed waits for its turn; until then nothing new is admitted to happen.
  if (input.dueInMs(key, input.now) > 0) return view({ ...base, admitted: false, want: unresolved });
  return { kind: "fetch", module: m, sourceKey: key, unresolved: { ...base, want: unresolved }, want: kind };
}

/** The view once the file was read and verified. */
export function fetchedView(step: Extract<ViewStep, { kind: "fetch" }>, known: KnownModule): PatchView {
  return { ...step.unresolved, want: { kind: step.want, module: { name: known.name, sha256: step.module.sha256, buildId: known.buildId } } };
}

/** The view when the file could not be read or was refused: hold still (nothing new is admitted). */
export function heldView(step: Extract<ViewStep, { kind: "fetch" }>): PatchView {
  return { ...step.unresolved, admitted: false };
}

/**
 * The module's name and build as far as the agent knows them without reading the file: from a
 * file it verified, its own entry, or a copy staged for the running kernel.
 */
function knownModule(p: ProjectedPatch, m: PatchModule, input: ViewInput): { name: string | undefined; buildId: string | undefined } {
  const cached = input.known(m.sha256);
  const stagedCopy = input.host.installed.find((i) => i.running && i.sha256 === m.sha256 && i.buildId !== undefined);
  const fromEntry = p.entry?.sha256 === m.sha256 ? p.entry.moduleName : undefined;
  return { name: cached?.name ?? fromEntry ?? stagedCopy?.name, buildId: cached?.buildId ?? stagedCopy?.buildId };
}

function view(v: PatchView): ViewStep {
  return { kind: "view", view: v };
}
