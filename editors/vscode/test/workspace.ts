// Builds the test workspace: 40 example pairs, a notes.md of 6 sentences, retrain quickly.
// Used by daemon.test.ts and (as `node out/test/workspace.js DIR`) by run.sh for the e2e test.

import * as fs from "fs";
import * as path from "path";

export const REPO_ROOT = path.resolve(__dirname, "..", "..", "..", "..");
export const EXAMPLES = path.join(REPO_ROOT, "examples", "bible_bbe_asv");

export function notesSentences(n = 6): string[] {
  const dev = fs.readFileSync(path.join(EXAMPLES, "dev.jsonl"), "utf8").split("\n").filter(Boolean);
  // short sentences keep the rewrites fast
  const targets = dev.map((l) => (JSON.parse(l) as { target: string }).target).filter((t) => t.length < 110);
  return targets.slice(0, n);
}

export function makeWorkspace(dir: string): { dir: string; notes: string; sentences: string[] } {
  fs.mkdirSync(dir, { recursive: true });
  const train = fs.readFileSync(path.join(EXAMPLES, "train.jsonl"), "utf8").split("\n").slice(0, 40);
  fs.writeFileSync(path.join(dir, "examples.pairs.jsonl"), train.join("\n") + "\n");
  const sentences = notesSentences();
  const notes = path.join(dir, "notes.md");
  fs.writeFileSync(notes, sentences.join("\n") + "\n");
  fs.writeFileSync(path.join(dir, ".pema.toml"), "retrain_after_seconds = 1.0\n");
  return { dir, notes, sentences };
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: node workspace.js DIR");
    process.exit(2);
  }
  const ws = makeWorkspace(path.resolve(dir));
  console.log(JSON.stringify(ws));
}
