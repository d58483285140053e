import { describe, expect, it } from "vitest";
import { kmodErrno, sysfsWriteErrno } from "./kmod-errors.ts";

describe("kmodErrno", () => {
  it.each([
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: Invalid module format", code: "ENOEXEC" },
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: Unknown symbol in module", code: "ENOENT" },
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: Invalid parameters", code: "EINVAL" },
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: File exists", code: "EEXIST" },
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: Device or resource busy", code: "EBUSY" },
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: Operation not permitted", code: "EPERM" },
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: Key was rejected by service", code: "EKEYREJECTED" },
    { op: "insmod", stderr: "insmod: ERROR: could not insert module p.ko: Required key not available", code: "EKEYREJECTED" },
    { op: "insmod", stderr: "insmod: ERROR: could not load module p.ko: No such file or directory", code: "EIO" },
    { op: "insmod", stderr: "insmod: can't insert 'p.ko': invalid module format", code: "ENOEXEC" },
    { op: "insmod", stderr: "insmod: can't insert 'p.ko': unknown symbol in module or invalid parameter", code: "ENOENT" },
    { op: "insmod", stderr: "something odd", code: "EIO" },
    { op: "rmmod", stderr: "rmmod: ERROR: Module p is in use", code: "EWOULDBLOCK" },
    { op: "rmmod", stderr: "rmmod: ERROR: Module p is not currently loaded", code: "ENOENT" },
    { op: "rmmod", stderr: "rmmod: can't unload module 'p': Resource temporarily unavailable", code: "EWOULDBLOCK" },
    { op: "rmmod", stderr: "rmmod: can't unload module 'p': No such file or directory", code: "ENOENT" },
    { op: "rmmod", stderr: "rmmod: ERROR: could not remove module p: Operation not permitted", code: "EPERM" },
    { op: "rmmod", stderr: "rmmod: ERROR: could not remove module p: Device or resource busy", code: "EBUSY" },
  ] as const)("$op: $stderr → $code", ({ op, stderr, code }) => {
    expect(kmodErrno(op, stderr)).toBe(code);
  });
});

describe("sysfsWriteErrno", () => {
  it.each([
    { code: "EINVAL", errno: "EINVAL" },
    { code: "EBUSY", errno: "EBUSY" },
    { code: "EACCES", errno: "EPERM" },
    { code: "ENOENT", errno: "ENOENT" },
    { code: undefined, errno: "EIO" },
    { code: "EROFS", errno: "EIO" },
  ])("$code → $errno", ({ code, errno }) => {
    expect(sysfsWriteErrno(code)).toBe(errno);
  });
});
