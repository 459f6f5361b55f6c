"""The JSON Schema of events (schemas/event.schema.json) against the validator, both ways.

    schema_roundtrip.py generate SCHEMA N OUT   N events per type, generated from the schema
                                                (hypothesis-jsonschema, derandomized), as NDJSON
    schema_roundtrip.py check SCHEMA IN         every line of IN validated against the schema
                                                (jsonschema, formats asserted); prints the
                                                failures, one JSON object per line

Run by tests/contract.rs, which feeds the generated events to the validator and the validator's
accepted events to `check`.
"""
import json
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema
import jsonschema


def branches(schema):
    for branch in schema["oneOf"]:
        yield branch["title"], {"$defs": schema["$defs"], **branch}


def generate(schema, n, out):
    with open(out, "w") as f:
        for title, branch in branches(schema):
            seen = []

            @settings(
                max_examples=n,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(from_schema(branch))
            def collect(event):
                seen.append(event)

            collect()
            for event in seen:
                f.write(json.dumps(event, ensure_ascii=False) + "\n")


def check(schema, path):
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    with open(path) as f:
        for i, line in enumerate(f):
            event = json.loads(line)
            errors = sorted(validator.iter_errors(event), key=lambda e: e.path)
            if errors:
                best = jsonschema.exceptions.best_match(errors)
                print(json.dumps({"line": i, "type": event.get("type"), "error": best.message[:300],
                                  "path": "/".join(str(p) for p in best.absolute_path)}))


if __name__ == "__main__":
    mode, schema_path = sys.argv[1], sys.argv[2]
    with open(schema_path) as f:
        schema = json.load(f)
    if mode == "generate":
        generate(schema, int(sys.argv[3]), sys.argv[4])
    else:
        check(schema, sys.argv[3])
