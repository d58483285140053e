/**
 * The host layer's ports: the only ways the driver touches the node. The real kernel and the
 * simulated host are two implementations of these small interfaces.
 *
 * Paths are host paths ("/sys/kernel/livepatch/p/enabled", "/var/lib/kpatch/..."): absolute,
 * relative to the host root the implementation was built for. The one exception is
 * `ModuleLoader.insmod`, which takes a path as this process sees it (see `HostFs.resolve`).
 */

/** errno-like codes a loader reports; the driver turns them into reasons with host context. */
export type LoaderErrno =
  | "ENOEXEC" // invalid module format
  | "ENOENT" // insmod: unknown symbol; rmmod/sysfs: no such module or file
  | "ESRCH" // insmod: wrong symbol version
  | "EINVAL" // invalid parameters; sysfs: value refused
  | "EEXIST" // module already loaded
  | "EBUSY" // another transition running, ftrace off, module busy
  | "EPERM" // not permitted (capability, modules_disabled, lockdown)
  | "EKEYREJECTED" // signature rejected
  | "EWOULDBLOCK" // rmmod: module in use
  | "EIO"; // anything else (loader missing, unreadable file, unknown error)

export type LoaderOperation = "insmod" | "rmmod" | "write";

/** What a ModuleLoader throws: the kernel's answer, not yet interpreted. */
export class LoaderError extends Error {
  override readonly name = "LoaderError";
  constructor(
    readonly code: LoaderErrno,
    readonly op: LoaderOperation,
    readonly target: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isLoaderError(value: unknown): value is LoaderError {
  return value instanceof LoaderError;
}

/** Loads and removes modules and writes livepatch sysfs attributes. Throws LoaderError. */
export interface ModuleLoader {
  readonly kind: "kmod" | "sim";
  /** Loads the module at `file`, a path as this process sees it (HostFs.resolve of a host path). */
  insmod(file: string): Promise<void>;
  /** Removes a loaded module by name. */
  rmmod(name: string): Promise<void>;
  /** Writes `value` to a sysfs attribute (host path), e.g. /sys/kernel/livepatch/p/enabled. */
  writeSysfs(path: string, value: string): Promise<void>;
  /**
   * Brings a simulated kernel's files up to date before the driver reads /sys or /proc.
   * The real kernel computes sysfs on read and has no such method.
   */
  refresh?(): Promise<void>;
}

export interface FileStat {
  /** From lstat: a symlink is reported as such, never followed. */
  kind: "file" | "dir" | "symlink" | "other";
  size: number;
}

/** Reads under the host root. Missing files are `undefined`, never errors. */
export interface HostReader {
  readText(path: string): Promise<string | undefined>;
  readBytes(path: string): Promise<Buffer | undefined>;
  /** Directory entries, sorted; undefined when the directory does not exist. */
  list(path: string): Promise<string[] | undefined>;
  /** lstat: undefined when missing. */
  stat(path: string): Promise<FileStat | undefined>;
  /** The path of a host path as this process sees it (host root joined). */
  resolve(path: string): string;
}

export interface WritableFile {
  write(bytes: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** The few writes staging under /var/lib/kpatch needs. Failures throw HostError(HostIOError). */
export interface StoreWriter {
  /** Creates one directory level; an existing directory is fine. */
  mkdir(path: string, mode: number): Promise<void>;
  /** Creates a new file (O_CREAT|O_EXCL|O_NOFOLLOW). */
  createExclusive(path: string, mode: number): Promise<WritableFile>;
  /** rename(2): atomic within one directory. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; a missing file is fine. */
  unlink(path: string): Promise<void>;
  /** Removes an empty directory; false when it is missing or not empty. */
  rmdir(path: string): Promise<boolean>;
  /** fsync a directory so a rename in it is durable. */
  syncDir(path: string): Promise<void>;
}

export type HostFs = HostReader & StoreWriter;

/** Time, injectable so tests run on a virtual clock. */
export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};
