// Prints the tests that failed in the vitest JSON reports of a directory, each with the first lines
// of its error: the summary at the end of `npm test` is what a CI log keeps when it is cut.
// Usage: node scripts/test/failures.mjs <reports-dir>
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

const dir = process.argv[2];
const firstLines = (text, n) => text.split("\n").map((l) => l.trim()).filter(Boolean).slice(0, n).join(" | ").slice(0, 400);
for (const name of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  const report = JSON.parse(readFileSync(join(dir, name), "utf8"));
  for (const file of report.testResults ?? []) {
    const where = relative(process.cwd(), file.name);
    const failed = (file.assertionResults ?? []).filter((t) => t.status === "failed");
    for (const t of failed) console.log(`  ${name.replace(/\.json$/, "")}: ${where} > ${t.fullName}\n      ${firstLines((t.failureMessages ?? []).join("\n"), 3)}`);
    // A file that failed outside any test (an import, a hook) has no failed assertion to show.
    if (failed.length === 0 && file.status === "failed") console.log(`  ${name.replace(/\.json$/, "")}: ${where}\n      ${firstLines(file.message ?? "", 3)}`);
  }
}
