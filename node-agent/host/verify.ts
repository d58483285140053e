import { checkModule } from "./check-module.ts";
import { hostError } from "./host-error.ts";
import { sha256Hex } from "./kpatch-store.ts";
import { modinfoFlag } from "./modinfo.ts";
import type { SignatureInfo } from "./module-signature.ts";
import { parseModule } from "./parse-module.ts";

export const DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024;

export interface VerifyExpectation {
  /** Pinned sha256 (hex). Omitted: the bytes' own digest is accepted. */
  sha256?: string;
  /** Kernel release the module must be built for. */
  kernelRelease: string;
  /** Name the module must carry. */
  moduleName?: string;
  /** Label for messages. */
  file?: string;
}

export interface VerifiedModule {
  name: string;
  vermagic: string;
  kernelRelease: string;
  sha256: string;
  size: number;
  signed: boolean;
  signature?: SignatureInfo;
  license?: string;
  srcversion?: string;
  /** GNU build-id (hex): compared with the live module's (/sys/module/<m>/notes) before claiming it. */
  buildId: string;
  /** Sim-built replace patch (klp_replace=Y); real modules declare replace in code, so false. */
  simReplace: boolean;
}

/**
 * Checks module bytes against what the node needs: size limit, pinned digest, ELF structure,
 * livepatch=Y, vermagic release, name. Pure (touches nothing); throws HostError with the reason.
 */
export function verifyModule(bytes: Uint8Array, expect: VerifyExpectation, maxBytes = DEFAULT_MAX_MODULE_BYTES): VerifiedModule {
  if (bytes.byteLength > maxBytes) throw hostError("ModuleTooLarge", { size: bytes.byteLength, limit: maxBytes });
  const sha256 = sha256Hex(bytes);
  const parsed = parseModule(bytes, expect.file);
  const checked = checkModule(parsed, {
    actualSha256: sha256,
    kernelRelease: expect.kernelRelease,
    ...(expect.sha256 === undefined ? {} : { sha256: expect.sha256 }),
    ...(expect.moduleName === undefined ? {} : { expectedName: expect.moduleName }),
    ...(expect.file === undefined ? {} : { file: expect.file }),
  });
  if (!checked.ok) throw hostError(checked.reason, checked.params);
  const m = checked.module;
  return {
    name: m.name,
    vermagic: m.vermagic,
    kernelRelease: m.kernelRelease,
    sha256,
    size: m.size,
    signed: m.signed,
    ...(m.signature === undefined ? {} : { signature: m.signature }),
    ...(m.license === undefined ? {} : { license: m.license }),
    ...(m.srcversion === undefined ? {} : { srcversion: m.srcversion }),
    buildId: m.buildId!, // checkModule refuses a module without one
    simReplace: modinfoFlag(m.modinfo, "klp_replace"),
  };
}
