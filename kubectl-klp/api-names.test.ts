import { describe, expect, it } from "vitest";
import { API_VERSION, NODE_OBJECTS_PATH, PLURAL, ofThisPatch as schemaOfThisPatch } from "../crds/schema.ts";
import { KLPN_PATH, KLP_PATH, ofThisPatch } from "./api-names.ts";

describe("the plugin's copy of the schema's names", () => {
  it("are the schema's paths", () => {
    expect([KLP_PATH, KLPN_PATH]).toEqual([`/apis/${API_VERSION}/${PLURAL}`, NODE_OBJECTS_PATH]);
  });
  it.each<[string | undefined, string | undefined]>([
    [undefined, "u1"],
    ["u1", "u1"],
    ["u0", "u1"],
    ["u0", undefined],
    [undefined, undefined],
  ])("ofThisPatch(%s, %s) decides as the schema's", (entryUid, uid) => {
    expect(ofThisPatch(entryUid, uid)).toBe(schemaOfThisPatch(entryUid, uid));
  });
});
