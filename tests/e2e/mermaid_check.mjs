// Parses Mermaid text from stdin with the real mermaid parser (npm mermaid@10 + jsdom); prints ok.
// With PIDMAP_MERMAID_DUMP=1 it prints, instead, what the parser read: the flowchart's vertices
// (id, text, classes), subgraphs (id, title, member ids) and edges, as JSON (tests/grid.py).
// Run from the directory holding node_modules (.cache/mermaid: npm install --prefix .cache/mermaid mermaid@10 jsdom).
import { JSDOM } from "jsdom";
import fs from "fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window; globalThis.document = dom.window.document;
Object.defineProperty(globalThis, "navigator", {value: dom.window.navigator, configurable: true});
globalThis.DOMPurify = undefined;
const mermaid = (await import("mermaid")).default;
const text = fs.readFileSync(0, "utf8");
try { await mermaid.parse(text); } catch (e) { console.log("error: " + (e.message || e)); process.exit(1); }
if (process.env.PIDMAP_MERMAID_DUMP) {
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db;
  const raw = db.getVertices();
  const vertices = Object.values(raw instanceof Map ? Object.fromEntries(raw) : raw)
    .map((v) => ({id: v.id, text: v.text, classes: v.classes}));
  const subgraphs = db.getSubGraphs().map((s) => ({id: s.id, title: s.title, nodes: s.nodes}));
  const edges = db.getEdges().map((e) => ({start: e.start, end: e.end}));
  console.log(JSON.stringify({vertices, subgraphs, edges}));
} else {
  console.log("ok");
}
