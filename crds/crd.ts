/** Turns the zod schema into a structural CustomResourceDefinition. */
import { z } from "zod";
import { stringify } from "yaml";
import { GROUP, KIND, NODE_KIND, NODE_PLURAL, PLURAL, VERSION, KernelLivePatchNodeSpec, KernelLivePatchNodeStatus, KernelLivePatchSpec, KernelLivePatchStatus } from "./schema.ts";

type JsonSchema = Record<string, unknown>;

const SAFE_MAX = Number.MAX_SAFE_INTEGER;

/**
 * Kubernetes wants a structural schema: no `additionalProperties` beside `properties`, int-or-string
 * expressed by its extension only, no `$schema`. Unknown fields are still rejected: kubectl's
 * default strict field validation turns pruned fields into errors.
 */
export function toStructural(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toStructural);
  if (node === null || typeof node !== "object") return node;
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(node as JsonSchema)) {
    if (k === "$schema") continue;
    out[k] = k === "default" || k === "x-kubernetes-validations" ? v : toStructural(v);
  }
  if (out.properties !== undefined && out.additionalProperties === false) delete out.additionalProperties;
  // An opaque object (preserve-unknown-fields) takes no additionalProperties schema.
  if (out["x-kubernetes-preserve-unknown-fields"] === true) delete out.additionalProperties;
  if (out["x-kubernetes-int-or-string"] === true) {
    delete out.anyOf;
    delete out.type;
  }
  // zod's ISO pattern is redundant with the format the API server checks itself.
  if (out.format === "date-time") delete out.pattern;
  if (out.minimum === -SAFE_MAX) delete out.minimum;
  if (out.maximum === SAFE_MAX) delete out.maximum;
  return out;
}

export function openApiSchema(schema: z.ZodType): JsonSchema {
  return toStructural(z.toJSONSchema(schema, { io: "input", target: "openapi-3.0" })) as JsonSchema;
}

interface ClusterCrd {
  readonly kind: string;
  readonly plural: string;
  readonly singular: string;
  readonly shortName: string;
  readonly columns: ReadonlyArray<Record<string, unknown>>;
  readonly description: string;
  readonly required?: readonly string[];
  readonly spec: JsonSchema;
  readonly status: JsonSchema;
}

/** A cluster-scoped CRD of this group: one served and stored version with a status subresource. */
function clusterCrd(c: ClusterCrd): Record<string, unknown> {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${c.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: "Cluster",
      names: { kind: c.kind, listKind: `${c.kind}List`, plural: c.plural, singular: c.singular, shortNames: [c.shortName], categories: ["all-livepatch"] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: c.columns,
          schema: {
            openAPIV3Schema: {
              type: "object",
              description: c.description,
              ...(c.required ? { required: c.required } : {}),
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec: c.spec,
                status: c.status,
              },
            },
          },
        },
      ],
    },
  };
}

export function buildCrd(): Record<string, unknown> {
  return clusterCrd({
    kind: KIND,
    plural: PLURAL,
    singular: "kernellivepatch",
    shortName: "klp",
    columns: [
      { name: "Ready", type: "string", jsonPath: ".status.summary.ready", description: "Nodes in the desired state / targeted applicable nodes" },
      { name: "Failed", type: "integer", jsonPath: ".status.summary.failed" },
      { name: "State", type: "string", jsonPath: ".spec.state" },
      { name: "Status", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
      { name: "Targeted", type: "integer", jsonPath: ".status.summary.targeted", priority: 1 },
      { name: "NotApplicable", type: "integer", jsonPath: ".status.summary.notApplicable", priority: 1 },
      // Counts, not the admitted list: on a fleet of a thousand nodes a list would fill the screen.
      { name: "Pending", type: "integer", jsonPath: ".status.summary.pending", priority: 1 },
      { name: "Replaced", type: "integer", jsonPath: ".status.summary.replaced", priority: 1 },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
      // After Age, as kubectl puts a pod's variable-length columns: the line's length varies with
      // the CVEs. kubectl get prints one value per column (not a list's), so the operator writes it.
      { name: "CVEs", type: "string", jsonPath: ".status.summary.cveExposure", description: "spec.cves and how many targeted nodes are still exposed" },
    ],
    description: "KernelLivePatch rolls a kpatch live patch module across the nodes it targets and reports, node by node, what the kernel says.",
    required: ["spec"],
    spec: openApiSchema(KernelLivePatchSpec),
    status: {
      ...openApiSchema(KernelLivePatchStatus),
      description: "Observed state, written by the controller: summary, conditions, rollout, and the nodes[] entries it copies from each node's KernelLivePatchNode.",
    },
  });
}

/** The per-node object: the operator writes its spec, the node's agent its status. */
export function buildNodeCrd(): Record<string, unknown> {
  return clusterCrd({
    kind: NODE_KIND,
    plural: NODE_PLURAL,
    singular: "kernellivepatchnode",
    shortName: "klpn",
    columns: [
      { name: "Patches", type: "string", jsonPath: ".status.summary", description: "Each patch's phase on this node" },
      { name: "Kernel", type: "string", jsonPath: ".status.entries[0].kernelRelease", priority: 1 },
      { name: "Tainted", type: "string", jsonPath: ".status.entries[0].taintFlags", priority: 1 },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
    description:
      "KernelLivePatchNode (one per Node, named after it) is how the operator and a node's agent talk: the operator writes which patches concern the node and whether its turn has come; the agent writes its entries. Read KernelLivePatch for the fleet view.",
    spec: openApiSchema(KernelLivePatchNodeSpec),
    status: openApiSchema(KernelLivePatchNodeStatus),
  });
}

export function crdYaml(crd: Record<string, unknown>): string {
  return "# Generated by `npm run gen:crd` from crds/schema.ts. Do not edit.\n" + stringify(crd, { lineWidth: 0 });
}
