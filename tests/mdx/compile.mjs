// Compile Markdown files with the MDX compiler Docusaurus 3 uses, as Docusaurus does:
// front matter cut off and parsed as YAML first, then @mdx-js/mdx `compile` with GFM and
// directives (Docusaurus's admonitions), bare text directives restored as Docusaurus does.
// Used by tests/test_mdx.py.
//
//   node compile.mjs [--format mdx|md] FILE...     (no FILE, or "-": read stdin)
//
// Prints one JSON object per file: ok/error, the parsed front matter, and what the Markdown
// parsed into (node type counts, JSX elements, {expressions}, ESM, raw HTML, link URLs, the plain
// text of each paragraph and heading), so a test can tell text from markup. Exits 1 if any file
// did not compile.
import { readFileSync } from "node:fs";
import { compile } from "@mdx-js/mdx";
import yaml from "js-yaml";
import remarkDirective from "remark-directive";
import remarkGfm from "remark-gfm";

const FRONT_MATTER = /^---\r?\n(?:([\s\S]*?)\r?\n)?---[ \t]*(?:\r?\n|$)/;

function plainText(node) {
  if (typeof node.value === "string" && (node.type === "text" || node.type === "inlineCode")) return node.value;
  if (node.type === "break") return "\n";
  return (node.children || []).map(plainText).join("");
}

// What Docusaurus does with a text directive no plugin handled (``node:fs``, ``Re:invent``): a bare
// one (no label, no attributes) becomes its text again; any other it warns about and leaves.
function restoreBareTextDirectives() {
  return (tree) => {
    const walk = (node) => {
      for (const [i, child] of (node.children || []).entries()) {
        const bare = child.type === "textDirective" && !(child.children || []).length && !Object.keys(child.attributes || {}).length;
        if (bare) node.children[i] = { type: "text", value: `:${child.name}` };
        else walk(child);
      }
    };
    walk(tree);
  };
}

// A remark plugin that records the parsed tree into `report` (it changes nothing).
function inspect(report) {
  return () => (tree) => {
    const walk = (node) => {
      report.nodes[node.type] = (report.nodes[node.type] || 0) + 1;
      if (node.type === "mdxJsxFlowElement" || node.type === "mdxJsxTextElement") report.jsx.push(node.name ?? "");
      if (node.type === "mdxFlowExpression" || node.type === "mdxTextExpression") report.expressions.push(node.value);
      if (node.type === "mdxjsEsm") report.esm.push(node.value);
      if (node.type === "html") report.html.push(node.value);
      if (node.type === "link" || node.type === "image") report.links.push(node.url);
      if (node.type === "paragraph" || node.type === "heading") report.texts.push(plainText(node));
      for (const child of node.children || []) walk(child);
    };
    walk(tree);
  };
}

async function check(name, source, format) {
  const report = { file: name, format, ok: false, error: null, frontMatter: null, nodes: {}, jsx: [], expressions: [], esm: [], html: [], links: [], texts: [] };
  try {
    let content = source;
    const match = FRONT_MATTER.exec(source);
    if (match) {
      report.frontMatter = yaml.load(match[1] ?? "") ?? {};
      content = source.slice(match[0].length);
    }
    await compile(content, { format, remarkPlugins: [remarkGfm, remarkDirective, restoreBareTextDirectives, inspect(report)] });
    report.ok = true;
  } catch (error) {
    report.error = String(error?.message ?? error) + (error?.line ? ` (line ${error.line}:${error.column})` : "");
  }
  return report;
}

const args = process.argv.slice(2);
let format = "mdx";
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--format") format = args[++i];
  else files.push(args[i]);
}
if (format !== "mdx" && format !== "md") {
  console.error(`--format must be mdx or md, not ${format}`);
  process.exit(2);
}
if (files.length === 0) files.push("-");
let failed = 0;
for (const file of files) {
  const source = readFileSync(file === "-" ? 0 : file, "utf8");
  const report = await check(file, source, format);
  if (!report.ok) failed++;
  process.stdout.write(JSON.stringify(report) + "\n");
}
process.exit(failed ? 1 : 0);
