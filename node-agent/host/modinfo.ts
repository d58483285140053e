/** The `.modinfo` section: NUL-separated `key=value` strings (padding NULs in between are skipped). */

export type ModinfoEntry = readonly [key: string, value: string];

/** Parses `.modinfo` bytes into entries in file order; strings without "=" are ignored. */
export function parseModinfo(section: Uint8Array): ModinfoEntry[] {
  const entries: ModinfoEntry[] = [];
  for (const text of Buffer.from(section.buffer, section.byteOffset, section.byteLength).toString("latin1").split("\0")) {
    const eq = text.indexOf("=");
    if (eq <= 0) continue;
    entries.push([text.slice(0, eq), text.slice(eq + 1)]);
  }
  return entries;
}

/** The first value of `key`, as the kernel's get_modinfo returns it. */
export function modinfoValue(entries: readonly ModinfoEntry[], key: string): string | undefined {
  let found: string | undefined;
  for (const [k, v] of entries) if (k === key) found ??= v;
  return found;
}

/** All values of `key` in order (e.g. alias). */
export function modinfoValues(entries: readonly ModinfoEntry[], key: string): string[] {
  return entries.filter(([k]) => k === key).map(([, v]) => v);
}

/** modinfo booleans are written "Y" (livepatch=Y, intree=Y, retpoline=Y). */
export function modinfoFlag(entries: readonly ModinfoEntry[], key: string): boolean {
  const value = modinfoValue(entries, key);
  return value === "Y" || value === "y" || value === "1";
}

/** Serialises entries back into `.modinfo` bytes (used to build test modules). */
export function encodeModinfo(entries: readonly ModinfoEntry[]): Buffer {
  return Buffer.from(entries.map(([k, v]) => `${k}=${v}\0`).join(""), "latin1");
}
