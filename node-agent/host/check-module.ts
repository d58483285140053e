import { isValidModuleName, normalizeModuleName } from "./names.ts";
import type { ParsedModule, ParseResult } from "./parse-module.ts";
import { describeReason, type Reason, type ReasonParams } from "./reasons.ts";

export interface ModuleExpectation {
  /** Pinned sha256 (hex); undefined when nothing is pinned. */
  sha256?: string;
  /** sha256 (hex) of the bytes actually received. */
  actualSha256: string;
  /** Kernel release the module must be built for (first word of vermagic). */
  kernelRelease: string;
  /** Name the module must carry (dashes and underscores are equivalent). */
  expectedName?: string;
  /** Label for messages (file name or URL). */
  file?: string;
}

export type CheckResult =
  | { ok: true; module: ParsedModule }
  | { ok: false; reason: Reason; message: string; params: ReasonParams };

/**
 * Decides whether a parsed module may be installed or loaded on a node. Checks, in order:
 * digest, ELF/module structure, module name, livepatch=Y, vermagic release, expected name, build-id.
 * The kernel skips the release part of vermagic on modversions kernels, so this check is ours.
 */
export function checkModule(parsed: ParseResult, expect: ModuleExpectation): CheckResult {
  const file = expect.file ?? "module";
  if (expect.sha256 !== undefined && expect.sha256.toLowerCase() !== expect.actualSha256.toLowerCase()) {
    return fail("ChecksumMismatch", { expected: expect.sha256.toLowerCase(), actual: expect.actualSha256 });
  }
  if (!parsed.ok) return fail(parsed.reason, { file, detail: parsed.detail, arch: parsed.arch });
  const module = parsed.module;
  if (!isValidModuleName(module.name)) {
    return fail("InvalidModuleName", { name: module.name, detail: "not a valid kernel module name" });
  }
  // kbuild turns '-' into '_' in the name a module carries, and the kernel looks modules up by that
  // name: one that calls itself with a dash could be loaded but never unloaded by name.
  if (module.name.includes("-")) {
    return fail("InvalidModuleName", { name: module.name, detail: "the name inside the module has a '-', which kbuild never produces; rebuild it" });
  }
  if (!module.livepatch) return fail("NotALivepatch", { name: module.name });
  if (module.kernelRelease !== expect.kernelRelease) {
    return fail("VermagicMismatch", {
      name: module.name,
      moduleRelease: module.kernelRelease || "(no vermagic)",
      kernelRelease: expect.kernelRelease,
    });
  }
  if (expect.expectedName !== undefined && normalizeModuleName(expect.expectedName) !== normalizeModuleName(module.name)) {
    return fail("InvalidModuleName", {
      name: expect.expectedName,
      detail: `the module calls itself ${module.name}`,
    });
  }
  // Without a build-id the agent could never tell, from the kernel, that this build is the one live.
  if (module.buildId === undefined) return fail("NoBuildId", { name: module.name });
  return { ok: true, module };
}

function fail(reason: Reason, params: ReasonParams): CheckResult {
  return { ok: false, reason, message: describeReason(reason, params), params };
}
