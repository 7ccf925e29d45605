"""Check proto/onnx.proto against the schema the onnx package was built with.

Every message of onnx's own descriptor must exist in ours with the same field names and numbers,
and every enum value the same number. (Our file is written by hand; this catches a typo in a
field number, which would silently corrupt models.) Exits 1 on any difference.

usage: check_proto.py proto/onnx.proto
"""
import re
import sys

from onnx import onnx_ml_pb2 as P


def parse(text):
    fields, enums, stack = {}, {}, []
    for raw in text.splitlines():
        line = raw.split("//")[0].strip()
        m = re.match(r"(message|enum) (\w+) \{", line)
        if m:
            stack.append((m.group(1), m.group(2)))
            continue
        if line == "}":
            stack.pop()
            continue
        if not stack:
            continue
        name = ".".join(s[1] for s in stack)
        m = re.match(r"(?:optional|repeated) [\w.]+ (\w+) = (\d+)", line)
        if m and stack[-1][0] == "message":
            fields.setdefault(name, {})[m.group(1)] = int(m.group(2))
        m = re.match(r"(\w+) = (\d+);", line)
        if m and stack[-1][0] == "enum":
            enums.setdefault(name, {})[m.group(1)] = int(m.group(2))
    return fields, enums


def main():
    fields, enums = parse(open(sys.argv[1]).read())
    problems = []

    def walk(messages, prefix):
        for md in messages:
            name = prefix + md.name
            theirs = {f.name: f.number for f in md.fields}
            if fields.get(name) != theirs:
                problems.append(f"message {name}: ours {fields.get(name)} vs onnx {theirs}")
            for ed in md.enum_types:
                check_enum(name + "." + ed.name, ed)
            walk(md.nested_types, name + ".")

    def check_enum(name, ed):
        theirs = {v.name: v.number for v in ed.values}
        if enums.get(name) != theirs:
            problems.append(f"enum {name}: ours {enums.get(name)} vs onnx {theirs}")

    walk(P.DESCRIPTOR.message_types_by_name.values(), "")
    for ed in P.DESCRIPTOR.enum_types_by_name.values():
        check_enum(ed.name, ed)
    for p in problems:
        print(p)
    checked = len(fields)
    print(f"{checked} messages checked, {len(problems)} differences")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
