/** Minimal ELF64 reader: header checks and section headers of a kernel module (ET_REL, x86-64). */

export const ELF = {
  MAGIC: 0x464c457f, // "\x7fELF" read little-endian
  CLASS64: 2,
  DATA_LSB: 1,
  ET_REL: 1,
  EM_X86_64: 62,
  EHDR_SIZE: 64,
  SHDR_SIZE: 64,
  SHT_NOBITS: 8,
} as const;

const MACHINES: Readonly<Record<number, string>> = {
  3: "x86 (i386)",
  8: "MIPS",
  20: "PowerPC",
  21: "PowerPC64",
  22: "s390",
  40: "ARM",
  62: "x86-64",
  183: "AArch64",
  243: "RISC-V",
  258: "LoongArch",
};

export function machineName(machine: number): string {
  return MACHINES[machine] ?? `ELF machine ${machine}`;
}

export interface ElfSection {
  name: string;
  type: number;
  offset: number;
  size: number;
}

export type ElfFailure = "NotAnELFModule" | "WrongArchitecture" | "Truncated";

export type ElfResult =
  | { ok: true; sections: ElfSection[] }
  | { ok: false; reason: ElfFailure; detail: string; arch?: string };

const TYPES: Readonly<Record<number, string>> = { 0: "no file type", 2: "an executable", 3: "a shared object", 4: "a core dump" };

/** Reads the ELF header and section table of `bytes` (the module without any appended signature). */
export function readElfSections(bytes: Uint8Array): ElfResult {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 4 || buf.readUInt32LE(0) !== ELF.MAGIC) {
    return { ok: false, reason: "NotAnELFModule", detail: "no ELF magic" };
  }
  if (buf.length < ELF.EHDR_SIZE) return { ok: false, reason: "Truncated", detail: "ELF header cut short" };
  const header = checkHeader(buf);
  if (header) return header;
  return readSectionTable(buf);
}

function checkHeader(buf: Buffer): ElfResult | undefined {
  if (buf[4] !== ELF.CLASS64) {
    return { ok: false, reason: "WrongArchitecture", detail: "ELF32 object", arch: "a 32-bit target" };
  }
  if (buf[5] !== ELF.DATA_LSB) {
    return { ok: false, reason: "WrongArchitecture", detail: "big-endian object", arch: "a big-endian target" };
  }
  const type = buf.readUInt16LE(16);
  if (type !== ELF.ET_REL) {
    return { ok: false, reason: "NotAnELFModule", detail: `ELF file is ${TYPES[type] ?? `type ${type}`}, not relocatable` };
  }
  const machine = buf.readUInt16LE(18);
  if (machine !== ELF.EM_X86_64) {
    const arch = machineName(machine);
    return { ok: false, reason: "WrongArchitecture", detail: `built for ${arch}`, arch };
  }
  return undefined;
}

function readSectionTable(buf: Buffer): ElfResult {
  const shoff = Number(buf.readBigUInt64LE(40));
  const shentsize = buf.readUInt16LE(58);
  const shnum = buf.readUInt16LE(60);
  const shstrndx = buf.readUInt16LE(62);
  if (shnum === 0) return { ok: false, reason: "NotAnELFModule", detail: "no section headers" };
  if (shentsize !== ELF.SHDR_SIZE) return { ok: false, reason: "Truncated", detail: `section header size ${shentsize}` };
  if (shoff + shnum * ELF.SHDR_SIZE > buf.length) {
    return { ok: false, reason: "Truncated", detail: "section header table extends past the end of the file" };
  }
  if (shstrndx >= shnum) return { ok: false, reason: "Truncated", detail: "section name table index out of range" };

  const raw: Array<{ nameOffset: number; type: number; offset: number; size: number }> = [];
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * ELF.SHDR_SIZE;
    const entry = {
      nameOffset: buf.readUInt32LE(at),
      type: buf.readUInt32LE(at + 4),
      offset: Number(buf.readBigUInt64LE(at + 24)),
      size: Number(buf.readBigUInt64LE(at + 32)),
    };
    if (entry.type !== ELF.SHT_NOBITS && entry.offset + entry.size > buf.length) {
      return { ok: false, reason: "Truncated", detail: `section ${i} extends past the end of the file` };
    }
    raw.push(entry);
  }
  const strtab = raw[shstrndx];
  if (!strtab) return { ok: false, reason: "Truncated", detail: "missing section name table" };
  const names = buf.subarray(strtab.offset, strtab.offset + strtab.size);
  const sections = raw.map((s) => ({ name: cString(names, s.nameOffset), type: s.type, offset: s.offset, size: s.size }));
  return { ok: true, sections };
}

/** NUL-terminated string at `offset` (empty when out of range). */
export function cString(buf: Buffer, offset: number, maxLength = buf.length): string {
  if (offset >= buf.length) return "";
  const end = buf.indexOf(0, offset);
  const stop = Math.min(end === -1 ? buf.length : end, offset + maxLength);
  return buf.toString("latin1", offset, stop);
}

export function sectionBytes(bytes: Uint8Array, section: ElfSection): Buffer {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return section.type === ELF.SHT_NOBITS ? Buffer.alloc(0) : buf.subarray(section.offset, section.offset + section.size);
}
