/** Every flag of the kpatch-agent CLI, for node:util parseArgs, and small readers of the parsed values. */
/** Every flag the CLI knows; each verb accepts the globals plus its own (VERB_FLAGS). */
export const OPTIONS = {
  // global
  "host-root": { type: "string" },
  json: { type: "boolean" },
  loader: { type: "string" },
  "transition-timeout": { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
  // install / uninstall / info
  "kernel-release": { type: "string", short: "k" },
  "kernel-version": { type: "string" }, // kpatch's spelling
  sha256: { type: "string" },
  // load / unload
  all: { type: "boolean" },
  // sim-host
  "boot-id": { type: "string" },
  "sig-enforce": { type: "boolean" },
  lockdown: { type: "string" },
  livepatch: { type: "boolean" }, // --no-livepatch
  "modules-disabled": { type: "boolean" },
  "ftrace-disabled": { type: "boolean" },
  "transition-ms": { type: "string" },
  "free-delay-ms": { type: "string" },
  stall: { type: "boolean" },
  tainted: { type: "string" },
  "replace-attribute": { type: "boolean" },
  "signal-attribute": { type: "boolean" },
  name: { type: "string" },
  vermagic: { type: "string" },
  replace: { type: "boolean" },
  "not-livepatch": { type: "boolean" },
  signed: { type: "boolean" },
  license: { type: "string" },
  output: { type: "string", short: "o" },
} as const;

export type Flag = keyof typeof OPTIONS;


export type Values = Partial<Record<Flag, string | boolean>>;

export function str(values: Values, flag: Flag): string | undefined {
  const v = values[flag];
  return typeof v === "string" ? v : undefined;
}

export function bool(values: Values, flag: Flag): boolean | undefined {
  const v = values[flag];
  return typeof v === "boolean" ? v : undefined;
}

export function drop<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function not(b: boolean | undefined): boolean | undefined {
  return b === undefined ? undefined : !b;
}
