import { createHash } from "node:crypto";
import { BUILD_ID_SECTION, encodeBuildIdNote } from "../host/build-id.ts";
import { ELF } from "../host/elf-sections.ts";
import { encodeModinfo, type ModinfoEntry } from "../host/modinfo.ts";
import { appendSignature, splitSignature } from "../host/module-signature.ts";
import { THIS_MODULE_NAME_OFFSET } from "../host/parse-module.ts";

/**
 * Sim-only modinfo key: a module built with `replace: true` carries `klp_replace=Y`, and the
 * simulated kernel treats it as an atomic-replace (cumulative) patch. Real kpatch-built modules
 * set klp_patch.replace in code instead; the real kernel never reads this key.
 */
export const SIM_REPLACE_MODINFO_KEY = "klp_replace";

/** Debian's vermagic suffix, appended when `vermagic` is a bare kernel release. */
export const DEBIAN_VERMAGIC_SUFFIX = " SMP preempt mod_unload modversions ";

export interface SimModuleOptions {
  /** Module name written into .gnu.linkonce.this_module and modinfo `name`. */
  name: string;
  /** Kernel release or a full vermagic string (a bare release gets DEBIAN_VERMAGIC_SUFFIX). */
  vermagic: string;
  /** Adds livepatch=Y (default true). */
  livepatch?: boolean;
  /** Adds klp_replace=Y: the sim treats the patch as atomic replace (default false). */
  replace?: boolean;
  /** Appends a (fake, sim-trusted) PKCS#7 signature trailer (default false). */
  signed?: boolean;
  /** With `signed`: signs with a key the simulated kernel's keyring does not hold (default false). */
  untrustedKey?: boolean;
  /** modinfo license (default "GPL"). */
  license?: string;
  /** ELF machine (default x86_64). */
  arch?: "x86_64" | "aarch64";
  /** Adds intree=Y (default false: out-of-tree, taints O). */
  intree?: boolean;
  /** Extra modinfo entries, e.g. to make two builds of one name differ. */
  extraModinfo?: ReadonlyArray<readonly [string, string]>;
  /** Leaves out the GNU build-id note (default false: present, derived from the contents, as ld does). */
  noBuildId?: boolean;
}

/** Size of struct module on Debian's 6.1 x86-64 kernel (.gnu.linkonce.this_module). */
const THIS_MODULE_SIZE = 0x380;
const MACHINE = { x86_64: ELF.EM_X86_64, aarch64: 183 } as const;
const SHT = { PROGBITS: 1, SYMTAB: 2, STRTAB: 3, NOTE: 7 } as const;
const SHF = { WRITE: 1, ALLOC: 2 } as const;

interface SectionSpec {
  name: string;
  type: number;
  flags: number;
  data: Buffer;
  align: number;
  link?: number;
  info?: number;
  entsize?: number;
}

/**
 * Builds a small but genuine ELF64 little-endian ET_REL kernel module (readelf reads it; the
 * host parser accepts it) for the simulated host and tests. It has no code: the sim never runs it.
 */
export function buildSimModule(options: SimModuleOptions): Buffer {
  const thisModule = Buffer.alloc(THIS_MODULE_SIZE);
  thisModule.write(options.name.slice(0, 55), THIS_MODULE_NAME_OFFSET, "latin1");
  const modinfo = encodeModinfo(modinfoEntries(options));
  // ld's --build-id=sha1 hashes the linked output: here the parts that make one build differ.
  const buildId = createHash("sha1").update(modinfo).update(thisModule).digest("hex");
  const sections: SectionSpec[] = [
    { name: ".modinfo", type: SHT.PROGBITS, flags: SHF.ALLOC, data: modinfo, align: 1 },
    ...(options.noBuildId ? [] : [{ name: BUILD_ID_SECTION, type: SHT.NOTE, flags: SHF.ALLOC, data: encodeBuildIdNote(buildId), align: 4 }]),
    {
      name: ".gnu.linkonce.this_module",
      type: SHT.PROGBITS,
      flags: SHF.ALLOC | SHF.WRITE,
      data: thisModule,
      align: 64,
    },
    { name: ".symtab", type: SHT.SYMTAB, flags: 0, data: Buffer.alloc(24), align: 8, link: options.noBuildId ? 4 : 5, info: 1, entsize: 24 },
    { name: ".strtab", type: SHT.STRTAB, flags: 0, data: Buffer.from([0]), align: 1 },
  ];
  const elf = layoutElf(sections, MACHINE[options.arch ?? "x86_64"]);
  return options.signed ? appendSignature(elf, fakeSignature(elf, options.untrustedKey ? UNTRUSTED_SIGNER : TRUSTED_SIGNER)) : elf;
}

/** The signer names fake signatures carry: the simulated kernel's keyring holds only the first. */
const TRUSTED_SIGNER = "kpatch-sim-signature";
const UNTRUSTED_SIGNER = "kpatch-sim-unknown-key";

/**
 * What the simulated kernel's module_sig_check() finds: no signature, one from the key its keyring
 * holds (a fake signature built here), or one it cannot verify (any other signer, real ones too).
 */
export type SimSignature = "none" | "trusted" | "untrusted";

export function simSignatureOf(bytes: Uint8Array): SimSignature {
  const split = splitSignature(bytes);
  if (!split.ok) return "untrusted";
  if (!split.signature) return "none";
  const trailer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).subarray(split.module.byteLength);
  return trailer.includes(TRUSTED_SIGNER, 0, "latin1") ? "trusted" : "untrusted";
}

function modinfoEntries(options: SimModuleOptions): ModinfoEntry[] {
  const vermagic = /\s/.test(options.vermagic.trim()) ? options.vermagic : options.vermagic.trim() + DEBIAN_VERMAGIC_SUFFIX;
  const entries: ModinfoEntry[] = [];
  if (options.livepatch ?? true) entries.push(["livepatch", "Y"]);
  if (options.replace) entries.push([SIM_REPLACE_MODINFO_KEY, "Y"]);
  entries.push(["license", options.license ?? "GPL"]);
  entries.push(...(options.extraModinfo ?? []));
  const srcversion = createHash("sha256").update(JSON.stringify(entries) + options.name).digest("hex");
  entries.push(["srcversion", srcversion.slice(0, 23).toUpperCase()]);
  entries.push(["depends", ""], ["retpoline", "Y"]);
  if (options.intree) entries.push(["intree", "Y"]);
  entries.push(["name", options.name], ["vermagic", vermagic]);
  return entries;
}

function layoutElf(specs: SectionSpec[], machine: number): Buffer {
  const shstrtabNames = ["", ...specs.map((s) => s.name), ".shstrtab"];
  const nameOffsets: number[] = [];
  let shstrtab = "";
  for (const name of shstrtabNames) {
    nameOffsets.push(shstrtab.length);
    shstrtab += name + "\0";
  }
  const all: SectionSpec[] = [
    ...specs,
    { name: ".shstrtab", type: SHT.STRTAB, flags: 0, data: Buffer.from(shstrtab, "latin1"), align: 1 },
  ];

  const chunks: Buffer[] = [];
  const offsets: number[] = [];
  let cursor = ELF.EHDR_SIZE;
  for (const section of all) {
    const pad = (section.align - (cursor % section.align)) % section.align;
    chunks.push(Buffer.alloc(pad));
    cursor += pad;
    offsets.push(cursor);
    chunks.push(section.data);
    cursor += section.data.length;
  }
  const shPad = (8 - (cursor % 8)) % 8;
  chunks.push(Buffer.alloc(shPad));
  const shoff = cursor + shPad;

  const headers = Buffer.alloc(ELF.SHDR_SIZE * (all.length + 1)); // entry 0 stays SHT_NULL
  all.forEach((section, i) => {
    const at = (i + 1) * ELF.SHDR_SIZE;
    headers.writeUInt32LE(nameOffsets[i + 1] ?? 0, at);
    headers.writeUInt32LE(section.type, at + 4);
    headers.writeBigUInt64LE(BigInt(section.flags), at + 8);
    headers.writeBigUInt64LE(BigInt(offsets[i] ?? 0), at + 24);
    headers.writeBigUInt64LE(BigInt(section.data.length), at + 32);
    headers.writeUInt32LE(section.link ?? 0, at + 40);
    headers.writeUInt32LE(section.info ?? 0, at + 44);
    headers.writeBigUInt64LE(BigInt(section.align), at + 48);
    headers.writeBigUInt64LE(BigInt(section.entsize ?? 0), at + 56);
  });

  return Buffer.concat([elfHeader(machine, shoff, all.length + 1), ...chunks, headers]);
}

function elfHeader(machine: number, shoff: number, shnum: number): Buffer {
  const h = Buffer.alloc(ELF.EHDR_SIZE);
  h.writeUInt32LE(ELF.MAGIC, 0);
  h[4] = ELF.CLASS64;
  h[5] = ELF.DATA_LSB;
  h[6] = 1; // EV_CURRENT
  h.writeUInt16LE(ELF.ET_REL, 16);
  h.writeUInt16LE(machine, 18);
  h.writeUInt32LE(1, 20);
  h.writeBigUInt64LE(BigInt(shoff), 40);
  h.writeUInt16LE(ELF.EHDR_SIZE, 52);
  h.writeUInt16LE(ELF.SHDR_SIZE, 58);
  h.writeUInt16LE(shnum, 60);
  h.writeUInt16LE(shnum - 1, 62); // .shstrtab is last
  return h;
}

/** A DER-shaped blob naming sha256 (so the parser reports the hash) and a sim marker. */
function fakeSignature(module: Buffer, signer: string): Buffer {
  const sha256Oid = Buffer.from("0609608648016503040201", "hex");
  const digest = createHash("sha256").update(module).digest();
  const body = Buffer.concat([sha256Oid, Buffer.from(signer, "latin1"), digest]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
