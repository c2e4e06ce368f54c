"""A tiny JSON Schema validator (stdlib only) for the subset docs/trace.schema.json uses:
type, enum, const, required, properties, allOf, if/then/else, $ref (local), minimum, minLength.
A keyword it does not know is an error, so a schema that grows past the subset is noticed."""
import json
import os

from loopctl_testlib import SOURCE_DIR

KNOWN = {"$schema", "$id", "$defs", "title", "description", "type", "enum", "const", "required",
         "properties", "allOf", "if", "then", "else", "$ref", "minimum", "minLength"}

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def load_schema():
    with open(os.path.join(SOURCE_DIR, "docs", "trace.schema.json")) as f:
        return json.load(f)


def errors(value, schema, root, path="$"):
    """The list of reasons `value` does not match `schema` (empty: it matches)."""
    out = []
    unknown = set(schema) - KNOWN
    if unknown:
        return [f"{path}: schema keywords not supported by this validator: {sorted(unknown)}"]
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        out += errors(value, target, root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](value) for t in types):
            out.append(f"{path}: {value!r} is not of type {types}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in enum")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} != {schema['const']!r}")
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        out.append(f"{path}: {value!r} < {schema['minimum']}")
    if "minLength" in schema and isinstance(value, str) and len(value) < schema["minLength"]:
        out.append(f"{path}: {value!r} shorter than {schema['minLength']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing required key {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                out += errors(value[key], sub, root, f"{path}.{key}")
    for sub in schema.get("allOf", []):
        out += errors(value, sub, root, path)
    if "if" in schema:
        if not errors(value, schema["if"], root, path):
            if "then" in schema:
                out += errors(value, schema["then"], root, path)
        elif "else" in schema:
            out += errors(value, schema["else"], root, path)
    return out


def check_trace(testcase, records):
    """Asserts every record has ts/ev and matches docs/trace.schema.json."""
    schema = load_schema()
    testcase.assertTrue(records, "the trace is empty")
    for rec in records:
        testcase.assertIn("ts", rec)
        testcase.assertIn("ev", rec)
        problems = errors(rec, schema, schema)
        testcase.assertEqual(problems, [], f"record {rec} does not match the schema")
