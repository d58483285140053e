/**
 * Credentials that change while a connection lives: a token file that is rotated, an exec
 * plugin's token or certificate that expires. The HTTP client asks before each request and says
 * when the API server answered 401 to what it sent, so the next ask fetches anew.
 */
import { readFileSync } from "node:fs";
import { KubeconfigError } from "./errors.ts";

export interface Credentials {
  /** The Authorization header's value (Bearer ..., Basic ...). */
  readonly authorization?: string | undefined;
  /** A client certificate and key (PEM) to present instead of the connection's own. */
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
}

export interface CredentialSource {
  /** What to send now (cached; may read a file or run a plugin). */
  current(): Promise<Credentials>;
  /** The API server answered 401 to `used`: forget them if they are still the current ones. */
  rejected(used: Credentials): void;
}

/** Milliseconds since the epoch; a test passes a fake. */
export type Clock = () => number;

export function staticCredentials(creds: Credentials): CredentialSource {
  return { current: () => Promise.resolve(creds), rejected: () => undefined };
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

/** client-go re-reads a tokenFile every minute (half the kubelet's projected-token refresh margin). */
export const TOKEN_FILE_PERIOD_MS = 60_000;

/** A token file re-read every minute and at once after a 401, as client-go's cached file token source. */
export function tokenFileCredentials(file: string, now: Clock, read: (file: string) => string = (f) => readFileSync(f, "utf8")): CredentialSource {
  let cached: { at: number; creds: Credentials } | undefined;
  return {
    current() {
      if (!cached || now() - cached.at >= TOKEN_FILE_PERIOD_MS) {
        let token: string;
        try {
          token = read(file).trim();
        } catch (cause) {
          return Promise.reject(new KubeconfigError("Unreadable", `tokenFile ${file}: ${(cause as Error).message}`, "tokenFile", { cause }));
        }
        if (!token) return Promise.reject(new KubeconfigError("Unreadable", `tokenFile ${file} is empty`, "tokenFile"));
        cached = { at: now(), creds: { authorization: `Bearer ${token}` } };
      }
      return Promise.resolve(cached.creds);
    },
    rejected(used) {
      if (cached?.creds === used) cached = undefined;
    },
  };
}
