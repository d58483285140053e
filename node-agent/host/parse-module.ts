import { BUILD_ID_SECTION, parseBuildIdNote } from "./build-id.ts";
import { cString, readElfSections, sectionBytes, type ElfFailure } from "./elf-sections.ts";
import { modinfoFlag, modinfoValue, parseModinfo, type ModinfoEntry } from "./modinfo.ts";
import { splitSignature, type SignatureInfo } from "./module-signature.ts";
import { moduleNameFromFile } from "./names.ts";

/**
 * Offset of `name` in struct module on x86-64 6.1: after `enum module_state state` (4 bytes,
 * padded to 8) and `struct list_head list` (16 bytes). Checked against Debian's 6.1.0-56-amd64
 * modules (af_key.ko: "af_key" at 0x18 of .gnu.linkonce.this_module).
 */
export const THIS_MODULE_NAME_OFFSET = 24;
/** MODULE_NAME_LEN on 64-bit: 64 - sizeof(unsigned long). */
export const THIS_MODULE_NAME_LENGTH = 56;

export interface ParsedModule {
  /** The name the kernel will use (from .gnu.linkonce.this_module, else modinfo name, else the file name). */
  name: string;
  nameSource: "this_module" | "modinfo" | "file";
  /** Full modinfo vermagic ("6.1.0-56-amd64 SMP preempt mod_unload modversions "). */
  vermagic: string;
  /** First word of vermagic: the kernel release the module was built for ("" when missing). */
  kernelRelease: string;
  /** modinfo livepatch=Y */
  livepatch: boolean;
  license?: string;
  /** modinfo intree=Y (in-tree modules do not taint O) */
  intree: boolean;
  retpoline: boolean;
  srcversion?: string;
  /** GNU build-id (hex) from .note.gnu.build-id: what the kernel shows in /sys/module/<m>/notes. */
  buildId?: string;
  depends: string[];
  /** An appended signature trailer is present (says nothing about whether the kernel trusts it). */
  signed: boolean;
  signature?: SignatureInfo;
  /** Every .modinfo entry in file order. */
  modinfo: ModinfoEntry[];
  /** Size of the whole file including any signature. */
  size: number;
}

export type ParseFailure = ElfFailure;

export type ParseResult =
  | { ok: true; module: ParsedModule }
  | { ok: false; reason: ParseFailure; detail: string; arch?: string };

/**
 * Parses a kernel module file: ELF64 LE x86-64 ET_REL, `.modinfo`, the module name and any appended
 * signature. Pure: never throws for bad input, returns a failure with a reason instead.
 */
export function parseModule(bytes: Uint8Array, fileName?: string): ParseResult {
  const split = splitSignature(bytes);
  if (!split.ok) return { ok: false, reason: "Truncated", detail: split.detail };
  const elf = readElfSections(split.module);
  if (!elf.ok) return elf;

  const modinfoSection = elf.sections.find((s) => s.name === ".modinfo");
  if (!modinfoSection) return { ok: false, reason: "NotAnELFModule", detail: "no .modinfo section" };
  const thisModule = elf.sections.find((s) => s.name === ".gnu.linkonce.this_module");
  if (!thisModule) return { ok: false, reason: "NotAnELFModule", detail: "no .gnu.linkonce.this_module section" };

  const modinfo = parseModinfo(sectionBytes(split.module, modinfoSection));
  const named = moduleName(sectionBytes(split.module, thisModule), modinfo, fileName);
  if (!named) return { ok: false, reason: "NotAnELFModule", detail: "the module has no name" };

  const vermagic = modinfoValue(modinfo, "vermagic") ?? "";
  const license = modinfoValue(modinfo, "license");
  const srcversion = modinfoValue(modinfo, "srcversion");
  const depends = modinfoValue(modinfo, "depends") ?? "";
  const note = elf.sections.find((s) => s.name === BUILD_ID_SECTION);
  const buildId = note ? parseBuildIdNote(sectionBytes(split.module, note)) : undefined;
  return {
    ok: true,
    module: {
      ...named,
      vermagic,
      kernelRelease: vermagic.trim().split(/\s+/)[0] ?? "",
      livepatch: modinfoFlag(modinfo, "livepatch"),
      ...(license === undefined ? {} : { license }),
      intree: modinfoFlag(modinfo, "intree"),
      retpoline: modinfoFlag(modinfo, "retpoline"),
      ...(srcversion === undefined ? {} : { srcversion }),
      ...(buildId === undefined ? {} : { buildId }),
      depends: depends.split(",").filter((d) => d.length > 0),
      signed: split.signature !== undefined,
      ...(split.signature === undefined ? {} : { signature: split.signature }),
      modinfo,
      size: bytes.byteLength,
    },
  };
}

function moduleName(
  thisModule: Buffer,
  modinfo: readonly ModinfoEntry[],
  fileName: string | undefined,
): Pick<ParsedModule, "name" | "nameSource"> | undefined {
  if (thisModule.length >= THIS_MODULE_NAME_OFFSET + THIS_MODULE_NAME_LENGTH) {
    const name = cString(thisModule, THIS_MODULE_NAME_OFFSET, THIS_MODULE_NAME_LENGTH);
    if (name.length > 0) return { name, nameSource: "this_module" };
  }
  const fromModinfo = modinfoValue(modinfo, "name");
  if (fromModinfo) return { name: fromModinfo, nameSource: "modinfo" };
  if (fileName) return { name: moduleNameFromFile(fileName), nameSource: "file" };
  return undefined;
}
