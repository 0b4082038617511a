// Bundle entry.js (CodeMirror 6 and codemirror-json-schema, as pinned in package-lock.json)
// into one ES module for the web UI, and gather the licence of every package in it.
//
//   cd ui-vendor && npm ci && npm run build
//
// Writes src/iotsupport/ui/static/vendor/codemirror.js and LICENSES.txt beside it.

import { readFileSync, readdirSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, "../src/iotsupport/ui/static/vendor");

// Parts of codemirror-json-schema the UI does not use, replaced by small local modules:
// its Markdown renderer (markdown-it and shiki) and its JSON5 and YAML parsers.
const STUBS = [
  { from: /^\.\.\/utils\/markdown(\.js)?$/, to: "stubs/markdown.js" },
  { from: /^\.\/(json5|yaml)-parser(\.js)?$/, to: "stubs/unsupported-parser.js" },
];

function stubPlugin(used) {
  return {
    name: "stubs",
    setup(build) {
      build.onResolve({ filter: /^\.\.?\// }, (args) => {
        if (!args.importer.includes(`${sep}codemirror-json-schema${sep}`)) return undefined;
        const stub = STUBS.find((item) => item.from.test(args.path));
        if (!stub) return undefined;
        used.add(stub.to);
        return { path: join(here, stub.to) };
      });
    },
  };
}

/** The folder of the npm package a bundled file belongs to (scoped names included). */
function packageDir(file) {
  const parts = file.split("/");
  const at = parts.lastIndexOf("node_modules");
  if (at < 0) return null;
  const length = parts[at + 1].startsWith("@") ? 2 : 1;
  return join(here, ...parts.slice(0, at + 1 + length));
}

function licenceOf(dir) {
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const file = readdirSync(dir).find((name) => /^(licen[cs]e|copying)([.-].*)?$/i.test(name));
  if (!file) throw new Error(`${manifest.name} has no licence file: add its text by hand`);
  return {
    name: manifest.name,
    version: manifest.version,
    licence: manifest.license ?? "no licence field; see the text",
    text: readFileSync(join(dir, file), "utf8").trim(),
  };
}

const used = new Set();
const result = await esbuild.build({
  entryPoints: [join(here, "entry.js")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  minify: true,
  legalComments: "none",
  metafile: true,
  write: false,
  logLevel: "warning",
  plugins: [stubPlugin(used)],
});
const missing = STUBS.map((stub) => stub.to).filter((path) => !used.has(path));
if (missing.length) throw new Error(`stubs not used (did codemirror-json-schema change?): ${missing}`);

// Only files that left code in the bundle (a module tree-shaken to nothing is not shipped).
const bundled = Object.entries(Object.values(result.metafile.outputs)[0].inputs)
  .filter(([, input]) => input.bytesInOutput > 0)
  .map(([file]) => file);
const packages = [...new Set(bundled.map(packageDir).filter(Boolean))]
  .map(licenceOf)
  .sort((a, b) => a.name.localeCompare(b.name));
const banner = `/*! The web UI's editor: ${packages.map((p) => `${p.name} ${p.version}`).join(", ")}. `
  + "Built by ui-vendor/build.mjs; licences in LICENSES.txt beside this file. */\n";
const code = banner + result.outputFiles[0].text;
const licences = [
  "Licences of the packages bundled in codemirror.js (gathered by ui-vendor/build.mjs).",
  "",
  ...packages.flatMap((p) => [`${"=".repeat(78)}`, `${p.name} ${p.version} (${p.licence})`, "", p.text, ""]),
].join("\n");

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "codemirror.js"), code);
writeFileSync(join(outDir, "LICENSES.txt"), licences);

const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
const raw = Buffer.from(code);
console.log(`${relative(process.cwd(), join(outDir, "codemirror.js"))}: ${kib(raw.length)}, `
  + `gzip ${kib(gzipSync(raw, { level: 9 }).length)}, brotli ${kib(brotliCompressSync(raw).length)}; `
  + `${packages.length} packages: ${packages.map((p) => p.name).join(", ")}`);
