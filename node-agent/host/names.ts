/** Names of modules, files and kernel releases, as kpatch and the kernel spell them. */

/** struct module's name is char[MODULE_NAME_LEN] with MODULE_NAME_LEN = 64 - sizeof(long): 55 characters + NUL. */
export const MAX_MODULE_NAME_LENGTH = 55;

/** Longest file or directory name component the agent accepts. */
export const MAX_NAME_LENGTH = 255;

/**
 * True when `name` is safe to use as one path component: not empty, no "/" or NUL or other
 * control characters, not "." or "..", no leading dot (also keeps clear of our temp files),
 * and at most `maxLength` UTF-8 bytes.
 */
export function isSafeName(name: string, maxLength: number = MAX_NAME_LENGTH): boolean {
  if (name.length === 0 || name.startsWith(".")) return false;
  if (name.includes("/") || name.includes("..")) return false;
  if (/[\u0000-\u001f\u007f]/.test(name)) return false;
  return Buffer.byteLength(name, "utf8") <= maxLength;
}

/** A module name the kernel would accept and the agent can use as a file name. */
export function isValidModuleName(name: string): boolean {
  return isSafeName(name, MAX_MODULE_NAME_LENGTH) && /^[A-Za-z0-9_-]+$/.test(name);
}

/** kpatch's rule: file basename without ".ko", dashes turned into underscores. */
export function moduleNameFromFile(file: string): string {
  const base = file.slice(file.lastIndexOf("/") + 1);
  const stem = base.endsWith(".ko") ? base.slice(0, -3) : base;
  return stem.replaceAll("-", "_");
}

/** The name the kernel shows in /sys/module for a name given with dashes (the kernel treats them alike). */
export function normalizeModuleName(name: string): string {
  return moduleNameFromFile(name);
}
