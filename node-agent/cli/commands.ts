import { readFile } from "node:fs/promises";
import path from "node:path";
import type { HostDriver } from "../host/driver.ts";
import { hostError, HostError } from "../host/host-error.ts";
import type { LoadTarget } from "../host/load.ts";
import type { Command, GlobalOptions } from "./args.ts";
import { formatInfo, formatList, formatStatus, seconds } from "./format.ts";

/** What a command produced: the JSON object (without `ok`) and the human text. */
export interface Output {
  json: Record<string, unknown>;
  text: string;
}

export type HostCommand = Exclude<Command, { verb: "help" } | { verb: "sim-host" }>;

/** kpatch's rule: an argument naming an existing path or ending in .ko is a file, else a module name. */
export function isFileArgument(arg: string): boolean {
  return arg.includes("/") || arg.endsWith(".ko");
}

async function readLocal(file: string, cwd: string): Promise<{ file: string; bytes: Buffer }> {
  const absolute = path.resolve(cwd, file);
  try {
    return { file: absolute, bytes: await readFile(absolute) };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw hostError("HostIOError", { path: absolute, detail: code }, { cause: error });
  }
}

async function target(arg: string, cwd: string): Promise<LoadTarget> {
  return isFileArgument(arg) ? readLocal(arg, cwd) : arg;
}

/** Runs one host command through the driver. Throws HostError on failure. */
export async function runHostCommand(driver: HostDriver, command: HostCommand, global: GlobalOptions, cwd: string): Promise<Output> {
  const timeout = { transitionTimeoutMs: global.transitionTimeoutMs };
  switch (command.verb) {
    case "list": {
      const state = await driver.inspect();
      return { json: { ...state }, text: formatList(state) };
    }
    case "status": {
      const [preflight, host] = await Promise.all([driver.preflight(), driver.inspect()]);
      return { json: { preflight, host }, text: formatStatus(preflight, host) };
    }
    case "info": {
      const info = await driver.info(await target(command.target, cwd), command.kernelRelease);
      return { json: { ...info }, text: formatInfo(info) };
    }
    case "install": {
      const { file, bytes } = await readLocal(command.file, cwd);
      const kernelRelease = command.kernelRelease ?? (await driver.preflight()).kernelRelease;
      const r = await driver.install(bytes, { kernelRelease, ...(command.sha256 ? { sha256: command.sha256 } : {}) });
      const text = r.alreadyInstalled
        ? `${r.name} is already installed for ${kernelRelease} (same sha256)\n`
        : `installing ${path.basename(file)} (${kernelRelease})\n`;
      return { json: { ...r }, text };
    }
    case "uninstall": {
      const kernelRelease = command.kernelRelease ?? (await driver.preflight()).kernelRelease;
      const r = await driver.uninstall(command.name, kernelRelease);
      if (!r.removed) throw hostError("NotInstalled", { name: r.name, kernelRelease });
      return { json: { ...r }, text: `uninstalling ${r.name} (${kernelRelease})\n` };
    }
    case "load":
      return command.all || !command.target ? loadAll(driver, timeout) : load(driver, await target(command.target, cwd), timeout);
    case "unload":
      return command.all || !command.target ? unloadAll(driver, timeout) : unload(driver, command.target, timeout);
  }
}

async function load(driver: HostDriver, t: LoadTarget, timeout: { transitionTimeoutMs: number }): Promise<Output> {
  const r = await driver.load(t, timeout);
  const lines = r.alreadyLoaded
    ? [`${r.name} is already loaded`]
    : [`loading patch module: ${r.name}`, `${r.name} enabled (transition took ${seconds(r.transitionMs)})`];
  for (const old of r.replaced) lines.push(`replaced ${old} (its module stays loaded: kpatch-agent unload ${old})`);
  return { json: { ...r }, text: lines.join("\n") + "\n" };
}

async function unload(driver: HostDriver, name: string, timeout: { transitionTimeoutMs: number }): Promise<Output> {
  const r = await driver.unload(name, timeout);
  const lines: string[] = [];
  if (r.disabled) lines.push(`disabling patch module: ${r.name}`);
  if (r.removed) lines.push(`unloading patch module: ${r.name}`);
  if (!lines.length) lines.push(`${r.name} is not loaded`);
  return { json: { ...r }, text: lines.join("\n") + "\n" };
}

/** A batch with failures fails as a whole: the first failure's reason, every result in details. */
function batchFailure(failed: Array<{ name: string; reason: HostError["reason"]; message: string }>, total: number, details: object): HostError {
  const first = failed[0]!;
  return new HostError(first.reason, `${failed.length} of ${total} failed; ${first.name}: ${first.message}`, {
    details: { ...details },
  });
}

async function loadAll(driver: HostDriver, timeout: { transitionTimeoutMs: number }): Promise<Output> {
  const r = await driver.loadAll(timeout);
  if (r.failed.length) throw batchFailure(r.failed, r.loaded.length + r.failed.length, r);
  const lines = r.loaded.map((l) => (l.alreadyLoaded ? `${l.name} is already loaded` : `loaded patch module: ${l.name}`));
  if (!lines.length) lines.push(`no patch modules installed for ${r.kernelRelease}`);
  return { json: { ...r }, text: lines.join("\n") + "\n" };
}

async function unloadAll(driver: HostDriver, timeout: { transitionTimeoutMs: number }): Promise<Output> {
  const r = await driver.unloadAll(timeout);
  if (r.failed.length) throw batchFailure(r.failed, r.unloaded.length + r.failed.length, r);
  const lines = r.unloaded.map((n) => `unloaded patch module: ${n}`);
  if (!lines.length) lines.push("no patch modules loaded");
  return { json: { ...r }, text: lines.join("\n") + "\n" };
}
