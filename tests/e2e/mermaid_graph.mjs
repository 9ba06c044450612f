// Reads Mermaid text from stdin with the real mermaid parser (npm mermaid@10 + jsdom) and prints the
// graph it understood as JSON: {"vertices": {id: label}, "edges": [[from, to]], "subgraphs": [{id, title, nodes}]}.
// Run from the directory holding node_modules (.cache/mermaid), as mermaid_check.mjs.
import { JSDOM } from "jsdom";
import fs from "fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window; globalThis.document = dom.window.document;
Object.defineProperty(globalThis, "navigator", {value: dom.window.navigator, configurable: true});
globalThis.DOMPurify = undefined;
const mermaid = (await import("mermaid")).default;
const text = fs.readFileSync(0, "utf8");
try {
  await mermaid.parse(text);  // loads the flowchart diagram (lazily registered) and checks the text
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db;
  const vertices = {};
  for (const [id, vertex] of Object.entries(db.getVertices())) vertices[id] = vertex.text;
  const edges = db.getEdges().map((e) => [e.start, e.end]);
  const subgraphs = db.getSubGraphs().map((s) => ({id: s.id, title: s.title, nodes: s.nodes}));
  console.log(JSON.stringify({vertices, edges, subgraphs}));
} catch (e) { console.log("error: " + (e.message || e)); process.exit(1); }
