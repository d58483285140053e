import { parseArgs } from "node:util";
import { z } from "zod";
import { bool, drop, OPTIONS, str, type Flag, type Values } from "./options.ts";
import { SIM_HOST_FLAGS, SimHostSchema, simHostCommand } from "./sim-host-args.ts";

const GLOBAL_FLAGS: readonly Flag[] = ["host-root", "json", "loader", "transition-timeout", "log-level", "help"];
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


const LOG_LEVELS = ["silent", "fatal", "error", "warn", "info", "debug", "trace"] as const;

const seconds = z.coerce.number().positive().max(24 * 3600);
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

export { SimHostSchema };
export type Command = z.infer<typeof HostCommandSchema> | z.infer<typeof SimHostSchema>;

export type ParsedCli = { ok: true; global: GlobalOptions; command: Command } | { ok: false; json: boolean; message: string };

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
