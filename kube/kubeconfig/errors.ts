/**
 * Why a kubeconfig could not be turned into a connection. Every case that kubectl would handle and
 * we do not is an error naming the field: a user whose credentials we dropped would otherwise be
 * sent as anonymous and loop on 401/403 with nothing in the log to say why.
 */
export type KubeconfigReason =
  /** No file of the list could be read, or an explicit file is missing. */
  | "NoFile"
  /** YAML that does not parse, or a field of the wrong type. */
  | "Invalid"
  /** No current context, or a context/cluster/user it names is missing. */
  | "NoContext"
  /** A field kubectl understands that this client does not (auth-provider, proxy-url, as, ...). */
  | "Unsupported"
  /** Two ways of authenticating in one user, or a data/file pair both set (kubectl refuses these too). */
  | "Conflict"
  /** A referenced file (certificate, key, CA, token file) cannot be read. */
  | "Unreadable"
  /** The exec credential plugin is not installed (its installHint is in the message). */
  | "ExecNotFound"
  /** The exec credential plugin failed, or printed something that is not a usable ExecCredential. */
  | "ExecFailed";

export class KubeconfigError extends Error {
  override readonly name = "KubeconfigError";
  constructor(
    readonly reason: KubeconfigReason,
    message: string,
    /** The offending field, as a path in the merged kubeconfig (users[admin].user.auth-provider). */
    readonly field?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
