import type { LoaderErrno, LoaderOperation } from "./ports.ts";

/**
 * The one place that reads kmod's (or busybox's) error text: insmod/rmmod print strerror-like
 * messages, not errno numbers. Matching is case-insensitive because busybox writes them in
 * lower case ("invalid module format"). First match wins.
 */
const PATTERNS: ReadonlyArray<readonly [RegExp, LoaderErrno, ReadonlyArray<LoaderOperation>]> = [
  [/invalid module format/i, "ENOEXEC", ["insmod"]],
  [/exec format error/i, "ENOEXEC", ["insmod"]],
  [/unknown symbol/i, "ENOENT", ["insmod"]],
  [/wrong symbol version/i, "ESRCH", ["insmod"]],
  [/invalid (parameters|argument)/i, "EINVAL", ["insmod", "rmmod"]],
  [/file exists/i, "EEXIST", ["insmod"]],
  [/is in use|resource temporarily unavailable/i, "EWOULDBLOCK", ["rmmod"]],
  [/device or resource busy/i, "EBUSY", ["insmod", "rmmod"]],
  [/key was rejected by service|required key not available|bad message/i, "EKEYREJECTED", ["insmod"]],
  [/operation not permitted|permission denied/i, "EPERM", ["insmod", "rmmod"]],
  [/is not currently loaded|no such file or directory|not found/i, "ENOENT", ["rmmod"]],
];

/** errno-like code for a failed insmod/rmmod from its stderr; EIO when the text is not recognised. */
export function kmodErrno(op: "insmod" | "rmmod", stderr: string): LoaderErrno {
  for (const [pattern, code, ops] of PATTERNS) {
    if (ops.includes(op) && pattern.test(stderr)) return code;
  }
  return "EIO";
}

/** errno code of a failed sysfs write (node's error.code) as a LoaderErrno. */
export function sysfsWriteErrno(code: string | undefined): LoaderErrno {
  switch (code) {
    case "EINVAL":
    case "EBUSY":
    case "ENOENT":
    case "EPERM":
      return code;
    case "EACCES":
      return "EPERM";
    case "EAGAIN":
      return "EBUSY";
    default:
      return "EIO";
  }
}
