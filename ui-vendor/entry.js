// What the web UI uses from CodeMirror 6 and codemirror-json-schema. build.mjs bundles
// exactly these exports (and what they need) into one ES module for the browser.

import { disableErrorLogging, parse } from "best-effort-json-parser";

// codemirror-json-schema reads half-typed JSON with this parser, which would otherwise
// report every incomplete document on the browser console.
disableErrorLogging();

/** Reads as much of half-typed JSON as it can (what codemirror-json-schema uses). */
export const parseBestEffort = parse;

export { Compartment, EditorState, StateEffect, StateField, Transaction } from "@codemirror/state";
export {
  EditorView, drawSelection, dropCursor, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, hoverTooltip, keymap, lineNumbers, rectangularSelection,
} from "@codemirror/view";
export {
  bracketMatching, ensureSyntaxTree, foldGutter, foldKeymap, indentOnInput, syntaxHighlighting,
} from "@codemirror/language";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export { highlightSelectionMatches, search, searchKeymap } from "@codemirror/search";
export {
  autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap,
} from "@codemirror/autocomplete";
export { forceLinting, lintGutter, lintKeymap, linter } from "@codemirror/lint";
export { json, jsonLanguage } from "@codemirror/lang-json";
export { tagHighlighter, tags } from "@lezer/highlight";
export {
  getJSONSchema, handleRefresh, jsonCompletion, jsonSchemaHover, stateExtensions, updateSchema,
} from "codemirror-json-schema";
export { Draft04, Draft06, Draft07 } from "json-schema-library";
