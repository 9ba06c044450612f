// Parses Mermaid text from stdin with the real mermaid parser (npm mermaid@10 + jsdom); prints ok.
// Run from the directory holding node_modules (.cache/mermaid: npm install --prefix .cache/mermaid mermaid@10 jsdom).
import { JSDOM } from "jsdom";
import fs from "fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window; globalThis.document = dom.window.document;
Object.defineProperty(globalThis, "navigator", {value: dom.window.navigator, configurable: true});
globalThis.DOMPurify = undefined;
const mermaid = (await import("mermaid")).default;
const text = fs.readFileSync(0, "utf8");
try { await mermaid.parse(text); console.log("ok"); } catch (e) { console.log("error: " + (e.message || e)); process.exit(1); }
