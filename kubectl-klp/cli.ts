/**
 * The plugin's thin shell: parse the command line, read the fleet once through the port, decide
 * and render with the pure functions, write. Returns the exit code: 0 ok, 1 failed, 2 usage.
 */
import { homedir } from "node:os";
import path from "node:path";
import { KubeApiError } from "../kube/http-client.ts";
import { decidePause, decideRetry, type Decision } from "./actions.ts";
import { parseCommandLine, type Command, type OutputFormat } from "./args.ts";
import type { FleetApi } from "./fleet-api.ts";
import { cveRows, indexFleet, nodeRows, statusRows } from "./fleet-view.ts";
import { cveTable, exposedTable, nodeTable, statusTable, structured } from "./render.ts";
import { USAGE } from "./usage.ts";

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export interface PluginIo {
  stdout(text: string): void;
  stderr(text: string): void;
  readonly env: Readonly<Record<string, string | undefined>>;
  now(): Date;
  /** The API for a kubeconfig file. */
  connect(kubeconfig: string): FleetApi;
}

/**
 * The kubeconfig: --kubeconfig, else $KUBECONFIG, else ~/.kube/config. A $KUBECONFIG list is
 * passed whole: kube/connection.ts merges it as kubectl does.
 */
export function kubeconfigPath(flag: string | undefined, env: PluginIo["env"]): string {
  if (flag) return flag;
  const list = env.KUBECONFIG;
  return list?.split(path.delimiter).some((p) => p !== "") ? list : path.join(env.HOME ?? homedir(), ".kube", "config");
}

export async function main(argv: readonly string[], io: PluginIo): Promise<number> {
  const parsed = parseCommandLine(argv);
  if (!parsed.ok) {
    io.stderr(`error: ${parsed.message}\nSee 'kubectl klp --help'.\n`);
    return EXIT.USAGE;
  }
  const { command } = parsed;
  if (command.verb === "help") {
    io.stdout(USAGE);
    return EXIT.OK;
  }
  let api: FleetApi | undefined;
  try {
    api = io.connect(kubeconfigPath(parsed.kubeconfig, io.env));
    const text = await run(command, api, io.now());
    if (typeof text === "string") io.stdout(text);
    else {
      io.stderr(`error: ${text.message}\n`);
      return EXIT.FAILED;
    }
    return EXIT.OK;
  } catch (err) {
    io.stderr(`error: ${err instanceof KubeApiError ? `${err.reason}: ${err.message}` : err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.FAILED;
  } finally {
    api?.close();
  }
}

/** One command: its output, or what went wrong. */
async function run(command: Exclude<Command, { verb: "help" }>, api: FleetApi, now: Date): Promise<string | { message: string }> {
  const snapshot = await api.read();
  const fleet = indexFleet(snapshot);
  const view = (rows: unknown, output: OutputFormat, table: () => string) => (output === "table" ? table() : structured(rows, output));
  switch (command.verb) {
    case "status": {
      if (command.patch !== undefined && !fleet.some((p) => p.name === command.patch)) return notFound(command.patch);
      const rows = statusRows(fleet, command.patch);
      return view(rows, command.output, () => statusTable(rows, now, command.patch !== undefined));
    }
    case "cves": {
      const rows = cveRows(fleet, command.cve);
      return view(rows, command.output, () => (command.exposed ? exposedTable(rows) : cveTable(rows)));
    }
    case "nodes": {
      const wanted = command.nodes;
      const rows = nodeRows(fleet, snapshot).filter((n) => wanted === undefined || wanted.includes(n.node));
      return view(rows, command.output, () => nodeTable(rows));
    }
    case "retry":
    case "pause":
    case "resume": {
      const patch = snapshot.patches.find((p) => p.metadata.name === command.patch);
      const onFleet = fleet.find((p) => p.name === command.patch);
      if (!patch || !onFleet) return notFound(command.patch);
      const decision: Decision = command.verb === "retry" ? decideRetry(patch, onFleet, now, command.node) : decidePause(patch, command.verb === "pause");
      if (!decision.ok) return decision;
      if (decision.patchBody) await api.mergePatch(patch.metadata.name, decision.patchBody);
      return decision.message;
    }
  }
}

const notFound = (name: string) => ({ message: `kernellivepatches.livepatch.kpatch.dev "${name}" not found` });
