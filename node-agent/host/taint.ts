/**
 * Kernel taint decoding (/proc/sys/kernel/tainted, Documentation/admin-guide/tainted-kernels.rst).
 *
 * Letters format: the letters of the set bits in ascending bit order, e.g. 45056 → "OEK".
 * Bit 0 reads "P" when set (proprietary module); an untainted kernel gives "". A set bit the
 * table does not know is written as "?<bit>" (e.g. bit 20 → "?20"), so "OK?20" means O, K and bit 20.
 */
export interface TaintBit {
  bit: number;
  letter: string;
  flag: string;
}

export const TAINT_BITS: readonly TaintBit[] = [
  { bit: 0, letter: "P", flag: "proprietary_module" },
  { bit: 1, letter: "F", flag: "forced_module" },
  { bit: 2, letter: "S", flag: "cpu_out_of_spec" },
  { bit: 3, letter: "R", flag: "forced_rmmod" },
  { bit: 4, letter: "M", flag: "machine_check" },
  { bit: 5, letter: "B", flag: "bad_page" },
  { bit: 6, letter: "U", flag: "user" },
  { bit: 7, letter: "D", flag: "die" },
  { bit: 8, letter: "A", flag: "overridden_acpi_table" },
  { bit: 9, letter: "W", flag: "warn" },
  { bit: 10, letter: "C", flag: "crap" },
  { bit: 11, letter: "I", flag: "firmware_workaround" },
  { bit: 12, letter: "O", flag: "oot_module" },
  { bit: 13, letter: "E", flag: "unsigned_module" },
  { bit: 14, letter: "L", flag: "softlockup" },
  { bit: 15, letter: "K", flag: "livepatch" },
  { bit: 16, letter: "X", flag: "aux" },
  { bit: 17, letter: "T", flag: "randstruct" },
  { bit: 18, letter: "N", flag: "test" },
  { bit: 19, letter: "J", flag: "fwctl" },
];

/** Taint values the agent itself sets or expects. */
export const TAINT = {
  OOT_MODULE: 1 << 12,
  UNSIGNED_MODULE: 1 << 13,
  LIVEPATCH: 1 << 15,
} as const;

export interface DecodedTaint {
  /** Letters of the set bits, ascending; unknown bits as "?<bit>". */
  letters: string;
  /** Flag names of the set bits, ascending; unknown bits as "bit<bit>". */
  flags: string[];
  /** Set bit numbers, ascending. */
  bits: number[];
}

/** Decodes a taint mask. Throws RangeError for negative or non-integer input. */
export function decodeTaint(value: bigint | number): DecodedTaint {
  const mask = toBigInt(value);
  const bits: number[] = [];
  for (let bit = 0, rest = mask; rest > 0n; bit++, rest >>= 1n) {
    if ((rest & 1n) === 1n) bits.push(bit);
  }
  return {
    letters: bits.map((bit) => TAINT_BITS[bit]?.letter ?? `?${bit}`).join(""),
    flags: bits.map((bit) => TAINT_BITS[bit]?.flag ?? `bit${bit}`),
    bits,
  };
}

function toBigInt(value: bigint | number): bigint {
  if (typeof value === "bigint") {
    if (value < 0n) throw new RangeError(`taint must not be negative: ${value}`);
    return value;
  }
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`taint must be a non-negative integer: ${value}`);
  return BigInt(value);
}

/** Parses the decimal contents of /proc/sys/kernel/tainted; undefined when not a number. */
export function parseTaint(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) return undefined;
  const value = Number(trimmed);
  return Number.isSafeInteger(value) ? value : undefined;
}
