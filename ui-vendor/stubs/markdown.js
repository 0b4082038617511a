// Replaces codemirror-json-schema's utils/markdown.js in the bundle. The original renders
// schema texts as Markdown with markdown-it and shiki (about a megabyte of code, and
// inline styles the UI's Content-Security-Policy refuses); here they stay plain text,
// HTML-escaped, with `code` spans kept as <code>.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function renderMarkdown(markdown) {
  const escaped = String(markdown ?? "").replace(/[&<>"']/g, (char) => ESCAPES[char]);
  return escaped.replace(/`([^`]+)`/g, "<code>$1</code>");
}
