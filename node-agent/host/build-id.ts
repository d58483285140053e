/**
 * A module's GNU build-id: the identity the agent compares between the file it verified and the
 * module the kernel runs. kbuild links every module with `--build-id=sha1` (Debian's 6.1 headers:
 * KBUILD_LDFLAGS_MODULE), and the kernel exports each loaded module's notes read-only in
 * /sys/module/<m>/notes/. srcversion is no substitute: Debian does not set
 * CONFIG_MODULE_SRCVERSION_ALL, so most modules have none, and it hashes sources, not the build.
 */

export const BUILD_ID_SECTION = ".note.gnu.build-id";
const NT_GNU_BUILD_ID = 3;

export const buildIdSysfsPath = (moduleName: string) => `/sys/module/${moduleName}/notes/${BUILD_ID_SECTION}`;

/** The build-id (lower-case hex) in an ELF note section's bytes; undefined when there is none. */
export function parseBuildIdNote(bytes: Uint8Array): string | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = 0; at + 12 <= b.length; ) {
    const namesz = b.readUInt32LE(at);
    const descsz = b.readUInt32LE(at + 4);
    const type = b.readUInt32LE(at + 8);
    const nameAt = at + 12;
    const descAt = nameAt + align4(namesz);
    const end = descAt + align4(descsz);
    if (descAt + descsz > b.length || namesz > b.length || descsz > b.length) return undefined;
    const name = b.subarray(nameAt, nameAt + namesz).toString("latin1");
    if (type === NT_GNU_BUILD_ID && name === "GNU\0" && descsz > 0) return b.subarray(descAt, descAt + descsz).toString("hex");
    at = end;
  }
  return undefined;
}

/** A build-id note's bytes (for the simulated kernel and the sim's module builder). */
export function encodeBuildIdNote(buildIdHex: string): Buffer {
  const desc = Buffer.from(buildIdHex, "hex");
  const header = Buffer.alloc(12);
  header.writeUInt32LE(4, 0);
  header.writeUInt32LE(desc.length, 4);
  header.writeUInt32LE(NT_GNU_BUILD_ID, 8);
  return Buffer.concat([header, Buffer.from("GNU\0", "latin1"), desc, Buffer.alloc(align4(desc.length) - desc.length)]);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
