/** The plugin's command line, parsed with node:util parseArgs into one command (pure). */
import { parseArgs } from "node:util";

export type OutputFormat = "table" | "json" | "yaml";

export type Command =
  | { readonly verb: "help" }
  | { readonly verb: "status"; readonly patch?: string; readonly output: OutputFormat }
  | { readonly verb: "cves"; readonly cve?: string; readonly exposed: boolean; readonly output: OutputFormat }
  | { readonly verb: "nodes"; readonly nodes?: readonly string[]; readonly output: OutputFormat }
  | { readonly verb: "retry"; readonly patch: string; readonly node?: string }
  | { readonly verb: "pause" | "resume"; readonly patch: string };

export type Parsed =
  | { readonly ok: true; readonly command: Command; readonly kubeconfig?: string }
  | { readonly ok: false; readonly message: string };

const OPTIONS = {
  output: { type: "string", short: "o" },
  exposed: { type: "boolean" },
  node: { type: "string" },
  kubeconfig: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Which options each verb takes (besides --kubeconfig and --help, which all take). */
const TAKES: Readonly<Record<Exclude<Command["verb"], "help">, readonly string[]>> = {
  status: ["output"],
  cves: ["output", "exposed"],
  nodes: ["output"],
  retry: ["node"],
  pause: [],
  resume: [],
};

/** How many positional arguments each verb takes after itself: [at least, at most]. */
const ARITY: Readonly<Record<Exclude<Command["verb"], "help">, readonly [number, number]>> = {
  status: [0, 1],
  cves: [0, 1],
  nodes: [0, Infinity],
  retry: [1, 1],
  pause: [1, 1],
  resume: [1, 1],
};

const isVerb = (v: string | undefined): v is Exclude<Command["verb"], "help"> => v !== undefined && Object.hasOwn(TAKES, v);

export function parseCommandLine(argv: readonly string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
  const { values, positionals } = parsed;
  const [verb, ...rest] = positionals;
  const kubeconfig = values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {};
  if (values.help || verb === undefined || verb === "help") return { ok: true, command: { verb: "help" }, ...kubeconfig };
  if (!isVerb(verb)) return { ok: false, message: `unknown command "${verb}"` };

  const given = (["output", "exposed", "node"] as const).filter((o) => values[o] !== undefined);
  const foreign = given.find((o) => !TAKES[verb].includes(o));
  if (foreign) return { ok: false, message: `${verb} takes no --${foreign}` };
  const [min, max] = ARITY[verb];
  if (rest.length < min) return { ok: false, message: `${verb} needs a KernelLivePatch name` };
  if (rest.length > max) return { ok: false, message: `${verb}: unexpected argument "${rest[max]}"` };

  // kubectl takes -o=json too; parseArgs reads a short option's "=json" as its value.
  const output = values.output?.replace(/^=/, "") ?? "table";
  if (output !== "table" && output !== "json" && output !== "yaml") return { ok: false, message: `-o must be json or yaml, not "${output}"` };
  const arg = rest[0];
  const command = ((): Command => {
    switch (verb) {
      case "status":
        return { verb, output, ...(arg !== undefined ? { patch: arg } : {}) };
      case "cves":
        return { verb, output, exposed: values.exposed ?? false, ...(arg !== undefined ? { cve: arg } : {}) };
      case "nodes":
        return { verb, output, ...(rest.length > 0 ? { nodes: rest } : {}) };
      case "retry":
        return { verb, patch: arg!, ...(values.node !== undefined ? { node: values.node } : {}) };
      case "pause":
      case "resume":
        return { verb, patch: arg! };
    }
  })();
  return { ok: true, command, ...kubeconfig };
}
