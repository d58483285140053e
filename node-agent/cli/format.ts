import type { HostState } from "../host/inspect.ts";
import type { ModuleInfo } from "../host/module-info.ts";
import type { Preflight } from "../host/preflight.ts";

/** Human output, mirroring kpatch's wording where kpatch has some. Pure: data in, text out. */

export function taintLine(tainted: number, flags: string): string {
  return `tainted: ${tainted}${flags ? ` (${flags})` : ""}`;
}

export function formatList(state: HostState): string {
  const lines = ["Loaded patch modules:"];
  for (const p of state.livepatches) lines.push(`${p.name} [${p.state}]`);
  const leftovers = state.modules.filter((m) => m.leftover);
  if (leftovers.length) {
    lines.push("", "Leftover patch modules (replaced or disabled, still in memory; remove with unload):");
    for (const m of leftovers) lines.push(m.name);
  }
  lines.push("", "Installed patch modules:");
  for (const i of state.installed) lines.push(`${i.name} (${i.kernelRelease})`);
  lines.push("", taintLine(state.tainted, state.taintFlags));
  return lines.join("\n") + "\n";
}

const row = (label: string, value: string) => `${(label + ":").padEnd(16)}${value}`;

export function formatPreflight(p: Preflight): string {
  const lines = [
    row("kernel release", p.kernelRelease),
    row("boot id", p.bootId || "(unknown)"),
    row("livepatch", p.livepatchSupported ? "supported" : "NOT supported"),
    row("module loading", p.modulesDisabled ? "disabled (kernel.modules_disabled=1)" : "allowed"),
    row("sig_enforce", p.sigEnforce ? "on" : "off"),
    row("lockdown", p.lockdown),
    row("ftrace", p.ftraceEnabled ? "enabled" : "disabled"),
    row("blockers", p.blockers.length ? "" : "none"),
  ];
  for (const b of p.blockers) lines.push(`  ${b.reason}: ${b.message}`);
  return lines.join("\n") + "\n";
}

export function formatStatus(preflight: Preflight, state: HostState): string {
  return `${formatPreflight(preflight)}\n${formatList(state)}`;
}

export function formatInfo(info: ModuleInfo): string {
  const m = info.module;
  const signature = m.signature
    ? `yes (${[m.signature.idType, m.signature.hashAlgorithm].filter(Boolean).join(", ")})`
    : "no";
  const where = info.installed.map((i) => `${i.kernelRelease}${i.running ? " (running)" : ""}`).join(", ");
  const lines = [
    `Patch information for ${m.name}:`,
    row("file", info.file),
    row("sha256", info.sha256),
    row("name", m.name),
    row("vermagic", m.vermagic.trim()),
    row("livepatch", m.livepatch ? "Y" : "N"),
    row("license", m.license ?? ""),
    row("signed", signature),
    row("installed", where || "no"),
    row("state", info.livepatch ? info.livepatch.state : info.loaded ? "loaded, not a live patch (leftover)" : "not loaded"),
    "modinfo:",
    ...m.modinfo.map(([k, v]) => `  ${k}=${v}`),
  ];
  return lines.join("\n") + "\n";
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
