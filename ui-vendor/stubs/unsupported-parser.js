// Replaces codemirror-json-schema's JSON5 and YAML parsers in the bundle: the UI edits
// JSON only, so the json5, yaml and @codemirror/lang-yaml packages stay out of it.

function unsupported() {
  throw new Error("only JSON is supported in this build");
}

export const parseJSON5DocumentState = unsupported;
export const parseYAMLDocumentState = unsupported;
