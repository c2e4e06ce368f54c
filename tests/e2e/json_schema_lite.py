"""The subset of JSON Schema that docs/trace.schema.json uses, in the standard library:
type, required, properties, enum, const, minimum, minLength, allOf, if/then and local $ref.
A keyword it does not know is an error, so the schema cannot silently outgrow it."""

KNOWN = {"$schema", "$id", "$defs", "$ref", "title", "description", "type", "required",
         "properties", "enum", "const", "minimum", "minLength", "allOf", "if", "then"}

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def errors(value, schema, root=None, path="$"):
    """A list of messages; empty when `value` is valid."""
    root = root if root is not None else schema
    out = []
    unknown = set(schema) - KNOWN
    if unknown:
        return ["%s: schema keyword(s) not supported: %s" % (path, sorted(unknown))]
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
            return out + ["%s: %r is not of type %s" % (path, value, types)]
    if "enum" in schema and value not in schema["enum"]:
        out.append("%s: %r is not one of %s" % (path, value, schema["enum"]))
    if "const" in schema and value != schema["const"]:
        out.append("%s: %r is not %r" % (path, value, schema["const"]))
    if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
        out.append("%s: %r < %r" % (path, value, schema["minimum"]))
    if "minLength" in schema and isinstance(value, str) and len(value) < schema["minLength"]:
        out.append("%s: %r shorter than %d" % (path, value, schema["minLength"]))
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append("%s: missing required %r" % (path, key))
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                out += errors(value[key], sub, root, path + "." + key)
    for sub in schema.get("allOf", []):
        out += errors(value, sub, root, path)
    if "if" in schema and not errors(value, schema["if"], root, path):
        out += errors(value, schema.get("then", {}), root, path)
    return out
