/** A token file, as client-go reads it: re-read once a minute and at once after a 401. */
import { describe, expect, it } from "vitest";
import { KubeconfigError } from "./errors.ts";
import { TOKEN_FILE_PERIOD_MS, tokenFileCredentials } from "./credentials.ts";

function tokenFile(initial: string) {
  const state = { content: initial, reads: 0, now: 0 };
  const creds = tokenFileCredentials("/var/run/token", () => state.now, () => {
    state.reads++;
    if (state.content === "<missing>") throw new Error("ENOENT: no such file");
    return state.content;
  });
  return { state, creds };
}

describe("token file", () => {
  it("is read once, then again after a minute", async () => {
    const { state, creds } = tokenFile("one\n");
    expect(await creds.current()).toEqual({ authorization: "Bearer one" });
    state.content = "two";
    state.now = TOKEN_FILE_PERIOD_MS - 1;
    expect(await creds.current()).toEqual({ authorization: "Bearer one" });
    state.now = TOKEN_FILE_PERIOD_MS;
    expect(await creds.current()).toEqual({ authorization: "Bearer two" });
    expect(state.reads).toBe(2);
  });

  it("is read again at once after a 401 to its token", async () => {
    const { state, creds } = tokenFile("one");
    const used = await creds.current();
    state.content = "rotated";
    creds.rejected(used);
    expect(await creds.current()).toEqual({ authorization: "Bearer rotated" });
  });

  it.each([
    ["missing", "<missing>", /tokenFile \/var\/run\/token: ENOENT/],
    ["empty", "  \n", /tokenFile \/var\/run\/token is empty/],
  ])("%s: an error naming the file, not an anonymous request", async (_, content, message) => {
    const { creds } = tokenFile(content);
    const e = await creds.current().then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(KubeconfigError);
    expect(e).toMatchObject({ reason: "Unreadable", message: expect.stringMatching(message) });
  });
});
