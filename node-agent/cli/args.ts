import { parseArgs } from "node:util";
import { z } from "zod";

/** Every flag the CLI knows; each verb accepts the globals plus its own (VERB_FLAGS). */
const OPTIONS = {
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

type Flag = keyof typeof OPTIONS;

const GLOBAL_FLAGS: readonly Flag[] = ["host-root", "json", "loader", "transition-timeout", "log-level", "help"];
const SIM_HOST_FLAGS: readonly Flag[] = [
  "kernel-release",
  "boot-id",
  "sig-enforce",
  "lockdown",
  "livepatch",
  "modules-disabled",
  "ftrace-disabled",
  "transition-ms",
  "free-delay-ms",
  "stall",
  "tainted",
  "replace-attribute",
  "signal-attribute",
  "name",
  "vermagic",
  "replace",
  "not-livepatch",
  "signed",
  "license",
  "output",
];

const VERB_FLAGS: Readonly<Record<string, readonly Flag[]>> = {
  list: [],
  status: [],
  info: ["kernel-release", "kernel-version"],
  install: ["kernel-release", "kernel-version", "sha256"],
  uninstall: ["kernel-release", "kernel-version"],
  load: ["all"],
  unload: ["all"],
  "sim-host": SIM_HOST_FLAGS,
  help: [],
};

export const VERBS = Object.keys(VERB_FLAGS);

const LOG_LEVELS = ["silent", "fatal", "error", "warn", "info", "debug", "trace"] as const;

const seconds = z.coerce.number().positive().max(24 * 3600);
const count = z.coerce.number().int().nonnegative();
const nonEmpty = z.string().min(1);

export const GlobalSchema = z.object({
  hostRoot: nonEmpty.default("/"),
  json: z.boolean().default(false),
  loader: z.enum(["auto", "kmod", "sim"]).default("auto"),
  transitionTimeoutMs: seconds.default(75).transform((s) => Math.round(s * 1000)),
  logLevel: z.enum(LOG_LEVELS).default("silent"),
});
export type GlobalOptions = z.infer<typeof GlobalSchema>;

const kernelRelease = nonEmpty.optional();

export const HostCommandSchema = z.discriminatedUnion("verb", [
  z.object({ verb: z.literal("help") }),
  z.object({ verb: z.literal("list") }),
  z.object({ verb: z.literal("status") }),
  z.object({ verb: z.literal("info"), target: nonEmpty, kernelRelease }),
  z.object({
    verb: z.literal("install"),
    file: nonEmpty,
    kernelRelease,
    sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits")
      .transform((s) => s.toLowerCase())
      .optional(),
  }),
  z.object({ verb: z.literal("uninstall"), name: nonEmpty, kernelRelease }),
  z.object({ verb: z.literal("load"), target: nonEmpty.optional(), all: z.boolean() }),
  z.object({ verb: z.literal("unload"), target: nonEmpty.optional(), all: z.boolean() }),
]);

/** `sim-host <action>`: one schema per action (zod's discriminated unions take one key). */
export const SimHostSchema = z.discriminatedUnion("action", [
  z.object({
    verb: z.literal("sim-host"),
    action: z.literal("init"),
    kernelRelease: nonEmpty,
    bootId: nonEmpty.optional(),
    signatureEnforce: z.boolean().optional(),
    lockdown: z.enum(["none", "integrity", "confidentiality"]).optional(),
    livepatchSupported: z.boolean().optional(),
    modulesDisabled: z.boolean().optional(),
    ftraceEnabled: z.boolean().optional(),
    transitionMs: count.optional(),
    freeDelayMs: count.optional(),
    stall: z.boolean().optional(),
    tainted: count.optional(),
    replaceAttribute: z.boolean().optional(),
    signalAttribute: z.boolean().optional(),
  }),
  z.object({
    verb: z.literal("sim-host"),
    action: z.literal("configure"),
    signatureEnforce: z.boolean().optional(),
    lockdown: z.enum(["none", "integrity", "confidentiality"]).optional(),
    livepatchSupported: z.boolean().optional(),
    modulesDisabled: z.boolean().optional(),
    ftraceEnabled: z.boolean().optional(),
    transitionMs: count.optional(),
    freeDelayMs: count.optional(),
    stall: z.boolean().optional(),
    replaceAttribute: z.boolean().optional(),
    signalAttribute: z.boolean().optional(),
  }),
  z.object({ verb: z.literal("sim-host"), action: z.literal("reboot"), kernelRelease, bootId: nonEmpty.optional() }),
  z.object({
    verb: z.literal("sim-host"),
    action: z.literal("make-module"),
    name: nonEmpty,
    vermagic: nonEmpty,
    output: nonEmpty,
    replace: z.boolean(),
    livepatch: z.boolean(),
    signed: z.boolean(),
    license: nonEmpty.optional(),
  }),
]);
export type Command = z.infer<typeof HostCommandSchema> | z.infer<typeof SimHostSchema>;

export type ParsedCli = { ok: true; global: GlobalOptions; command: Command } | { ok: false; json: boolean; message: string };

type Values = Partial<Record<Flag, string | boolean>>;

function str(values: Values, flag: Flag): string | undefined {
  const v = values[flag];
  return typeof v === "string" ? v : undefined;
}

function bool(values: Values, flag: Flag): boolean | undefined {
  const v = values[flag];
  return typeof v === "boolean" ? v : undefined;
}

function drop<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function not(b: boolean | undefined): boolean | undefined {
  return b === undefined ? undefined : !b;
}

/** The raw command object for zod, from the verb, its positionals and flags. */
function rawCommand(verb: string, rest: string[], v: Values): Record<string, unknown> {
  const release = str(v, "kernel-release") ?? str(v, "kernel-version");
  switch (verb) {
    case "info":
      return { verb, target: rest[0], kernelRelease: release };
    case "install":
      return { verb, file: rest[0], kernelRelease: release, sha256: str(v, "sha256") };
    case "uninstall":
      return { verb, name: rest[0], kernelRelease: release };
    case "load":
    case "unload":
      return { verb, target: rest[0], all: bool(v, "all") ?? false };
    case "sim-host":
      return simHostCommand(rest[0], v);
    default:
      return { verb };
  }
}

function simHostCommand(action: string | undefined, v: Values): Record<string, unknown> {
  const settings = drop({
    signatureEnforce: bool(v, "sig-enforce"),
    lockdown: str(v, "lockdown"),
    livepatchSupported: bool(v, "livepatch"),
    modulesDisabled: bool(v, "modules-disabled"),
    ftraceEnabled: not(bool(v, "ftrace-disabled")),
    transitionMs: str(v, "transition-ms"),
    freeDelayMs: str(v, "free-delay-ms"),
    stall: bool(v, "stall"),
    replaceAttribute: bool(v, "replace-attribute"),
    signalAttribute: bool(v, "signal-attribute"),
  });
  switch (action) {
    case "init":
      return {
        verb: "sim-host",
        action,
        kernelRelease: str(v, "kernel-release"),
        ...drop({ bootId: str(v, "boot-id"), tainted: str(v, "tainted") }),
        ...settings,
      };
    case "configure":
      return { verb: "sim-host", action, ...settings };
    case "reboot":
      return { verb: "sim-host", action, ...drop({ kernelRelease: str(v, "kernel-release"), bootId: str(v, "boot-id") }) };
    case "make-module":
      return {
        verb: "sim-host",
        action,
        name: str(v, "name"),
        vermagic: str(v, "vermagic"),
        output: str(v, "output"),
        replace: bool(v, "replace") ?? false,
        livepatch: !(bool(v, "not-livepatch") ?? false),
        signed: bool(v, "signed") ?? false,
        ...drop({ license: str(v, "license") }),
      };
    default:
      return { verb: "sim-host", action: action ?? "(missing)" };
  }
}

const POSITIONALS: Readonly<Record<string, (all: boolean) => number>> = {
  info: () => 1,
  install: () => 1,
  uninstall: () => 1,
  load: (all) => (all ? 0 : 1),
  unload: (all) => (all ? 0 : 1),
  "sim-host": () => 1,
};

function issues(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.join(".")}: ${i.message}` : i.message)).join("; ");
}

/** Parses argv (without node and script) and the environment into a validated command. */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCli {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; allowNegative: true }>>;
  const json = argv.includes("--json");
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, allowNegative: true, strict: true });
  } catch (error) {
    return { ok: false, json, message: error instanceof Error ? error.message : String(error) };
  }
  const values = parsed.values as Values;
  const [verb, ...rest] = parsed.positionals;
  if (values.help || verb === "help") return { ok: true, global: GlobalSchema.parse({}), command: { verb: "help" } };
  if (verb === undefined) return { ok: false, json, message: "no command given" };
  const allowed = VERB_FLAGS[verb];
  if (!allowed) return { ok: false, json, message: `unknown command '${verb}'` };

  const stray = (Object.keys(values) as Flag[]).filter((f) => !GLOBAL_FLAGS.includes(f) && !allowed.includes(f));
  if (stray.length) return { ok: false, json, message: `${verb} does not take ${stray.map((f) => `--${f}`).join(", ")}` };
  const expected = POSITIONALS[verb]?.(values.all === true) ?? 0;
  if (rest.length !== expected) {
    return { ok: false, json, message: `${verb} takes ${expected} argument(s), got ${rest.length}` };
  }

  const global = GlobalSchema.safeParse(
    drop({
      hostRoot: str(values, "host-root") ?? (env.KPATCH_HOST_ROOT || undefined),
      json: bool(values, "json"),
      loader: str(values, "loader"),
      transitionTimeoutMs: str(values, "transition-timeout"),
      logLevel: str(values, "log-level"),
    }),
  );
  if (!global.success) return { ok: false, json, message: issues(global.error) };
  const schema = verb === "sim-host" ? SimHostSchema : HostCommandSchema;
  const command = schema.safeParse(drop(rawCommand(verb, rest, values)));
  if (!command.success) return { ok: false, json, message: issues(command.error) };
  return { ok: true, global: global.data, command: command.data };
}
