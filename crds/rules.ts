import { z } from "zod";

/**
 * A cross-field rule written once and enforced twice: by the API server as a CEL
 * `x-kubernetes-validations` entry in the generated CRD, and in TypeScript by the zod schema
 * (so the controller and the agent refuse the same input the API server refuses, and tests can
 * check the two agree).
 */
export interface Rule<T> {
  /** CEL expression evaluated by the API server with `self` bound to the value. */
  readonly cel: string;
  /** Shown to the user on rejection: say what is wrong and how to fix it. */
  readonly message: string;
  /** Optional JSONPath (relative to `self`) the API server reports the error under. */
  readonly fieldPath?: string;
  /** The same predicate in TypeScript. */
  readonly holds: (value: T) => boolean;
}

/** Attaches rules (both forms) and the field documentation to a schema. */
export function withRules<S extends z.ZodType>(
  schema: S,
  description: string,
  rules: ReadonlyArray<Rule<z.output<S>>>,
): S {
  const refined = schema.superRefine((value, ctx) => {
    for (const r of rules) {
      if (!r.holds(value)) ctx.addIssue({ code: "custom", message: r.message, path: fieldPathToZod(r.fieldPath) });
    }
  });
  return refined.meta({
    description,
    "x-kubernetes-validations": rules.map((r) => ({
      rule: r.cel,
      message: r.message,
      ...(r.fieldPath ? { fieldPath: r.fieldPath } : {}),
    })),
  });
}

function fieldPathToZod(fieldPath: string | undefined): PropertyKey[] {
  if (!fieldPath) return [];
  return fieldPath.split(".").filter((p) => p.length > 0);
}

/** Documentation only (no rules): the `description` that `kubectl explain` shows. */
export function doc<S extends z.ZodType>(schema: S, description: string): S {
  return schema.meta({ description });
}

/**
 * A map of at most `max` entries: `maxProperties` for the API server (which also needs it to
 * bound the cost of a CEL rule over the map's keys), the same count for zod.
 */
export function maxProperties<S extends z.ZodType<Record<string, unknown>>>(schema: S, max: number): S {
  return schema
    .refine((m) => Object.keys(m).length <= max, { message: `at most ${max} entries` })
    .meta({ maxProperties: max });
}
