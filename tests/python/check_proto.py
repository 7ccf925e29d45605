import onnx, re, sys
from onnx import onnx_ml_pb2 as P
# parse our proto: message -> {field: number}
txt = open(sys.argv[1]).read()
ours = {}
stack = []
for line in txt.splitlines():
    line = line.split('//')[0].strip()
    m = re.match(r'(message|enum) (\w+) \{', line)
    if m:
        stack.append((m.group(1), m.group(2))); continue
    if line == '}':
        stack.pop(); continue
    m = re.match(r'(optional|repeated) [\w.]+ (\w+) = (\d+)', line)
    if m and stack:
        name = '.'.join(s[1] for s in stack)
        ours.setdefault(name, {})[m.group(2)] = int(m.group(3))
def walk(desc, prefix):
    for md in (list(desc.values()) if hasattr(desc, "values") else desc):
        name = prefix + md.name
        theirs = {f.name: f.number for f in md.fields}
        mine = ours.get(name)
        if mine is None:
            print('MISSING message', name); 
        elif mine != theirs:
            print('DIFF', name, 'missing', set(theirs.items())-set(mine.items()), 'extra', set(mine.items())-set(theirs.items()))
        walk(md.nested_types, name + '.')
walk(P.DESCRIPTOR.message_types_by_name, '')
for en in P.DESCRIPTOR.enum_types_by_name.values(): print('enum', en.name, [(v.name, v.number) for v in en.values][-3:])
print(onnx.__version__)
print([ (v.name,v.number) for v in P.TensorProto.DataType.DESCRIPTOR.values][-4:])
