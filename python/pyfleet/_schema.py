"""JSON Schemas for commands, derived from their type hints; dataclass arguments built from JSON.

describe(fn, name) -> (info, warnings)
    info = {"args": schema, "result": schema or None, "item": schema or None, "doc": str or None}
    The args schema comes from the handler's first parameter, the result from its return
    annotation. A generator handler (def or async def with yield) has no result (execute on it
    is refused); its item schema comes from Iterator[T] / Generator[T, ...] / AsyncIterator[T] /
    AsyncGenerator[T, ...]. A non-generator has item None (stream yields its result once).

arg_converter(fn) -> callable or None
    None unless the args hint involves a dataclass; otherwise a function JSON args -> args with
    dataclass instances built, raising TypeError / ValueError that names the field path.

python -m pyfleet._schema MODULE
    prints {"commands": {name: {args, result, item, doc, idempotent}}, "warnings": [...]}.

Dialect: JSON Schema 2020-12. Named types (TypedDict, dataclass) go into "$defs" of the schema
that uses them and are referenced with "$ref": "#/$defs/Name", which is also how recursion is
expressed. Binary values are {"x-pyfleet-binary": "bytes"} (bytes, bytearray) or
{"x-pyfleet-binary": "buffer"} (memoryview: any buffer, possibly a typed array): no JSON type,
since in Node they are Buffers / typed arrays and over HTTP base64 strings. A float is
{"type": "number"}; NaN and +-Infinity travel as null (docs/typed-commands.md).

A hint this module does not understand becomes the open schema {} and a warning naming the
command, the place and the hint: start-up never fails because of a hint. Standard library only.
"""
import collections.abc
import dataclasses
import inspect
import json
import sys
import types
import typing

__all__ = ["describe", "arg_converter", "describe_module"]

BINARY_KEY = "x-pyfleet-binary"
_OPEN = {}

_NONE_TYPE = type(None)
_LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_DICT_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_ITER_ORIGINS = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)
_REQ_QUALIFIERS = {typing.Required: True, typing.NotRequired: False}


class _Unsupported(Exception):
    pass


def _hint_name(tp):
    if tp is None or tp is _NONE_TYPE:
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    text = repr(tp)
    return text[len("typing."):] if text.startswith("typing.") else text


def _strip_annotated(tp):
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_typeddict(tp):
    return isinstance(tp, type) and typing.is_typeddict(tp)


def _is_dataclass_type(tp):
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _own_doc(tp):
    """A class's own docstring: not inherited, and not the signature dataclasses makes up."""
    doc = tp.__dict__.get("__doc__")
    if not doc:
        return None
    if dataclasses.is_dataclass(tp) and doc.startswith(tp.__name__ + "("):
        return None
    return inspect.cleandoc(doc)


class _Builder:
    """Builds one self-contained schema (its own $defs) for args, result or item."""

    def __init__(self, command, where, result_side, warnings):
        self.command = command
        self.where = where
        # Output of dataclasses: every field is present (asdict); input: fields with defaults may be left out.
        self.result_side = result_side
        self.warnings = warnings
        self.defs = {}
        self.names = {}  # class -> def name

    def warn(self, path, tp, why=None):
        place = path if path == self.where else "%s (%s)" % (self.where, path)
        msg = "command %r: unsupported hint %s at %s; its schema is left open" % (self.command, _hint_name(tp), place)
        if why:
            msg += " (%s)" % why
        self.warnings.append(msg)

    def build(self, tp):
        schema = self.schema(tp, self.where)
        if self.defs:
            schema = dict(schema)
            schema["$defs"] = {k: self.defs[k] for k in sorted(self.defs)}
        return schema

    def schema(self, tp, path):
        try:
            return self._schema(tp, path)
        except _Unsupported as exc:
            self.warn(path, tp, str(exc) or None)
            return dict(_OPEN)

    def _schema(self, tp, path):
        tp = _strip_annotated(tp)
        if tp is typing.Any or tp is object:
            return {}
        if tp is None or tp is _NONE_TYPE:
            return {"type": "null"}
        if isinstance(tp, typing.ForwardRef) or isinstance(tp, str):
            raise _Unsupported("a forward reference that could not be resolved")
        if isinstance(tp, typing.NewType):
            return self._schema(tp.__supertype__, path)
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp in (bytes, bytearray):
            return {BINARY_KEY: "bytes"}
        if tp is memoryview:
            return {BINARY_KEY: "buffer"}
        if _is_typeddict(tp) or _is_dataclass_type(tp):
            return {"$ref": "#/$defs/" + self.named(tp, path)}

        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in _REQ_QUALIFIERS:
            return self._schema(args[0], path)
        if origin is typing.Literal:
            values = list(args)
            for v in values:
                if v is not None and not isinstance(v, (str, int, bool)):
                    raise _Unsupported("Literal of %r, not a JSON value" % (v,))
            return {"const": values[0]} if len(values) == 1 else {"enum": values}
        if origin is typing.Union or origin is types.UnionType:
            return self.union(args, path)
        if tp is list or origin in _LIST_ORIGINS or tp in _LIST_ORIGINS:
            if not args:
                return {"type": "array"}
            return {"type": "array", "items": self.schema(args[0], path + "[]")}
        if tp is dict or origin in _DICT_ORIGINS or tp in _DICT_ORIGINS:
            if not args:
                return {"type": "object"}
            if _strip_annotated(args[0]) is not str:
                raise _Unsupported("JSON object keys are strings")
            return {"type": "object", "additionalProperties": self.schema(args[1], path + "{}")}
        if tp is tuple or origin is tuple:
            return self.tuple(args, path)
        raise _Unsupported()

    def union(self, args, path):
        alternatives = []
        for i, a in enumerate(args):
            s = self.schema(a, path)
            if s == {}:
                return {}  # one open alternative opens the whole union
            if s not in alternatives:
                alternatives.append(s)
        # Literal["a"] | Literal["b"] | None reads better as one enum.
        if all(set(s) <= {"enum", "const"} or s == {"type": "null"} for s in alternatives):
            values = []
            for s in alternatives:
                for v in s.get("enum", [s["const"]] if "const" in s else [None]):
                    if v not in values:
                        values.append(v)
            return {"enum": values}
        return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}

    def tuple(self, args, path):
        if not args:
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self.schema(args[0], path + "[]")}
        if args == ((),):  # tuple[()]
            return {"type": "array", "maxItems": 0}
        items = [self.schema(a, "%s[%d]" % (path, i)) for i, a in enumerate(args)]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "items": False}

    def named(self, cls, path):
        name = self.names.get(cls)
        if name is not None:
            return name
        name = cls.__name__
        n = 2
        while name in self.defs:
            name = "%s%d" % (cls.__name__, n)
            n += 1
        self.names[cls] = name
        self.defs[name] = {}  # reserved: a recursive reference finds the name
        self.defs[name] = self.typeddict(cls, name) if _is_typeddict(cls) else self.dataclass(cls, name)
        return name

    def hints(self, cls):
        try:
            return typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:
            raise _Unsupported("its annotations cannot be resolved: %s" % exc)

    def typeddict(self, cls, name):
        try:
            hints = self.hints(cls)
        except _Unsupported as exc:
            self.warn(name, cls, str(exc))
            return {"type": "object"}
        props = {}
        required = []
        for key, hint in hints.items():
            # Required[...] / NotRequired[...] win; without them the class's totality decides. Under
            # `from __future__ import annotations` Python 3.11 cannot see the qualifier itself.
            q = typing.get_origin(_strip_annotated(hint))
            is_required = _REQ_QUALIFIERS[q] if q in _REQ_QUALIFIERS else key in cls.__required_keys__
            props[key] = self.schema(hint, "%s.%s" % (name, key))
            if is_required:
                required.append(key)
        return self.object(cls, props, required)

    def dataclass(self, cls, name):
        try:
            hints = self.hints(cls)
        except _Unsupported as exc:
            self.warn(name, cls, str(exc))
            return {"type": "object"}
        props = {}
        required = []
        for f in dataclasses.fields(cls):
            if not f.init and not self.result_side:
                continue
            props[f.name] = self.schema(hints.get(f.name, f.type), "%s.%s" % (name, f.name))
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if self.result_side or not has_default:
                required.append(f.name)
        return self.object(cls, props, required)

    @staticmethod
    def object(cls, props, required):
        # Closed: a misspelt key is the mistake typed commands exist to catch.
        out = {"type": "object", "properties": props}
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        doc = _own_doc(cls)
        if doc:
            out["description"] = doc
        return out


def _resolve_hints(fn, command, warnings):
    """The handler's annotations, evaluated one by one so that one bad hint spoils only itself."""
    raw = dict(getattr(fn, "__annotations__", None) or {})
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    out = {}
    globalns = getattr(fn, "__globals__", {})
    for key, value in raw.items():
        holder = types.SimpleNamespace(__annotations__={key: value}, __module__=getattr(fn, "__module__", None))
        try:
            out[key] = typing.get_type_hints(holder, globalns=globalns, include_extras=True)[key]
        except Exception as exc:
            where = "result" if key == "return" else "parameter %s" % key
            shown = value if isinstance(value, str) else _hint_name(value)
            warnings.append("command %r: %s: hint %s cannot be resolved (%s); its schema is left open" % (command, where, shown, exc))
    return out


def _first_param(fn):
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params or params[0].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        return None
    return params[0].name


def _is_generator(fn):
    target = inspect.unwrap(fn)
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


def describe(fn, name):
    """Schemas of one command: ({"args", "result", "item", "doc"}, [warnings])."""
    warnings = []
    hints = _resolve_hints(fn, name, warnings)
    first = _first_param(fn)

    if first is not None and first in hints:
        args = _Builder(name, "args", False, warnings).build(hints[first])
    else:
        args = {}

    result = None
    item = None
    if _is_generator(fn):
        if "return" in hints:
            ret = _strip_annotated(hints["return"])
            origin = typing.get_origin(ret) or ret
            params = typing.get_args(ret)
            if origin in _ITER_ORIGINS and params:
                item = _Builder(name, "item", True, warnings).build(params[0])
            else:
                warnings.append(
                    "command %r: item: a generator's return hint should be Iterator[T] or AsyncIterator[T], got %s; its schema is left open"
                    % (name, _hint_name(ret))
                )
                item = {}
        else:
            item = {}
    else:
        result = _Builder(name, "result", True, warnings).build(hints["return"]) if "return" in hints else {}

    doc = inspect.getdoc(fn)
    return {"args": args, "result": result, "item": item, "doc": doc or None}, warnings


# ---- dataclass arguments ----------------------------------------------------------------


def _kind(value):
    return "null" if value is None else type(value).__name__


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(exc_type, path, expected, value):
    raise exc_type("%s: expected %s, got %s (%s)" % (path, expected, _show(value), _kind(value)))


class _Converters:
    """Builds a converter per hint; None means the value passes as it is (nothing to build or check)."""

    def __init__(self):
        self.cache = {}

    def has_dataclass(self, tp, seen=None):
        seen = set() if seen is None else seen
        tp = _strip_annotated(tp)
        if _is_dataclass_type(tp):
            return True
        if _is_typeddict(tp):
            if tp in seen:
                return False
            seen.add(tp)
            try:
                hints = typing.get_type_hints(tp, include_extras=True)
            except Exception:
                return False
            return any(self.has_dataclass(h, seen) for h in hints.values())
        return any(self.has_dataclass(a, seen) for a in typing.get_args(tp))

    def build(self, tp):
        """A function (value, path) -> value; never None (leaves that need nothing pass through)."""
        tp = _strip_annotated(tp)
        if _is_dataclass_type(tp):
            return self.dataclass(tp)
        if tp in (typing.Any, object):
            return _identity
        if tp is None or tp is _NONE_TYPE:
            return _check(lambda v: v is None, "null")
        if tp is bool:
            return _check(lambda v: isinstance(v, bool), "a boolean")
        if tp is int:
            return _check(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
        if tp is float:
            # JSON numbers: 2 is a fine float (PEP 484's numeric tower).
            return _check(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
        if tp is str:
            return _check(lambda v: isinstance(v, str), "a string")
        if _is_typeddict(tp):
            return self.typeddict(tp)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in _REQ_QUALIFIERS:
            return self.build(args[0])
        if origin is typing.Literal:
            allowed = list(args)
            expected = "one of " + ", ".join(json.dumps(a) if a is None or isinstance(a, (str, int)) else repr(a) for a in allowed)
            return _check(lambda v: any(v == a and type(v) is type(a) for a in allowed), expected)
        if origin is typing.Union or origin is types.UnionType:
            return self.union(args)
        if origin in _LIST_ORIGINS and args:
            inner = self.build(args[0])

            def list_of(value, path):
                if not isinstance(value, list):
                    _fail(TypeError, path, "a list", value)
                return [inner(v, "%s[%d]" % (path, i)) for i, v in enumerate(value)]

            return list_of
        if origin in _DICT_ORIGINS and len(args) == 2:
            inner = self.build(args[1])

            def dict_of(value, path):
                if not isinstance(value, dict):
                    _fail(TypeError, path, "an object", value)
                return {k: inner(v, "%s.%s" % (path, k)) for k, v in value.items()}

            return dict_of
        if origin is tuple and args:
            return self.tuple(args)
        return _identity  # anything else is passed through; the schema said what it could

    def union(self, args):
        alternatives = [self.build(a) for a in args]
        expected = " or ".join(_hint_name(a) for a in args)
        others = [c for a, c in zip(args, alternatives) if a is not None and a is not _NONE_TYPE]
        if len(others) == 1 and len(args) == 2:
            # Optional[X]: X's own error says more than "expected X or None".
            inner = others[0]
            return lambda value, path: None if value is None else inner(value, path)

        def one_of(value, path):
            for conv in alternatives:
                try:
                    return conv(value, path)
                except (TypeError, ValueError):
                    continue
            _fail(TypeError, path, expected, value)

        return one_of

    def tuple(self, args):
        if len(args) == 2 and args[1] is Ellipsis:
            inner = self.build(args[0])

            def var_tuple(value, path):
                if not isinstance(value, (list, tuple)):
                    _fail(TypeError, path, "a list", value)
                return tuple(inner(v, "%s[%d]" % (path, i)) for i, v in enumerate(value))

            return var_tuple
        convs = [self.build(a) for a in args]

        def fixed_tuple(value, path):
            if not isinstance(value, (list, tuple)) or len(value) != len(convs):
                _fail(TypeError, path, "a list of %d items" % len(convs), value)
            return tuple(c(v, "%s[%d]" % (path, i)) for i, (c, v) in enumerate(zip(convs, value)))

        return fixed_tuple

    def typeddict(self, cls):
        if cls in self.cache:
            return self.cache[cls]
        cell = []
        self.cache[cls] = lambda value, path: cell[0](value, path)  # recursion goes through the cell
        hints = typing.get_type_hints(cls, include_extras=True)
        convs = {k: self.build(h) for k, h in hints.items() if self.has_dataclass(h)}

        def typed_dict(value, path):
            if not isinstance(value, dict):
                _fail(TypeError, path, "an object (%s)" % cls.__name__, value)
            if not convs:
                return value
            out = dict(value)
            for k, conv in convs.items():
                if k in out:
                    out[k] = conv(out[k], "%s.%s" % (path, k))
            return out

        cell.append(typed_dict)
        self.cache[cls] = typed_dict
        return typed_dict

    def dataclass(self, cls):
        if cls in self.cache:
            return self.cache[cls]
        cell = []
        self.cache[cls] = lambda value, path: cell[0](value, path)
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        convs = {f.name: self.build(hints.get(f.name, f.type)) for f in fields}
        required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        known = set(convs)

        def build_dataclass(value, path):
            if isinstance(value, cls):
                return value
            if not isinstance(value, dict):
                _fail(TypeError, path, "an object (%s)" % cls.__name__, value)
            for k in required:
                if k not in value:
                    raise ValueError("%s: missing required field %r of %s" % (path, k, cls.__name__))
            for k in value:
                if k not in known:
                    raise ValueError("%s: unexpected field %r for %s (its fields: %s)" % (path, k, cls.__name__, ", ".join(sorted(known))))
            return cls(**{k: convs[k](v, "%s.%s" % (path, k)) for k, v in value.items()})

        cell.append(build_dataclass)
        self.cache[cls] = build_dataclass
        return build_dataclass


def _identity(value, path):
    return value


def _check(ok, expected):
    def check(value, path):
        if not ok(value):
            _fail(TypeError, path, expected, value)
        return value

    return check


def arg_converter(fn):
    """The function that turns a call's JSON args into what the handler's hint asks for, or None.

    None (the common case) when the first parameter's hint involves no dataclass: the runtime
    then passes the args as they are. Otherwise conv(args) returns the converted value and raises
    TypeError / ValueError naming the field path ("args.points[1].x: expected an integer, got
    'a' (str)") when the args do not fit.
    """
    first = _first_param(fn)
    if first is None:
        return None
    try:
        hint = typing.get_type_hints(fn, include_extras=True).get(first)
    except Exception:
        return None
    if hint is None:
        return None
    builder = _Converters()
    try:
        if not builder.has_dataclass(hint):
            return None
        conv = builder.build(hint)
    except Exception:
        return None  # describe() has already warned about hints it cannot read

    def convert(args):
        return conv(args, "args")

    return convert


# ---- the module's description ----------------------------------------------------------


def describe_module(registry):
    """{"commands": {...}, "warnings": [...]} for a registry mapping name -> Command (pyfleet._registry)."""
    commands = {}
    warnings = []
    for name in sorted(registry):
        entry = registry[name]
        fn, idempotent = entry.fn, entry.idempotent
        try:
            info, w = describe(fn, name)
        except Exception as exc:  # a hint must never stop the description of the others
            info = {"args": {}, "result": None if _is_generator(fn) else {}, "item": {} if _is_generator(fn) else None, "doc": None}
            w = ["command %r: its hints could not be read (%s: %s); its schemas are left open" % (name, type(exc).__name__, exc)]
        info["idempotent"] = bool(idempotent)
        commands[name] = info
        warnings.extend(w)
    return {"commands": commands, "warnings": warnings}


def main(argv):
    import contextlib

    if len(argv) != 2:
        sys.stderr.write("usage: python -m pyfleet._schema MODULE (a .py file or a dotted module name)\n")
        return 2
    from ._registry import _COMMANDS
    from ._worker import _load_module

    # What the module prints while it imports must not end up inside the JSON on stdout.
    with contextlib.redirect_stdout(sys.stderr):
        _load_module(argv[1])
    sys.stdout.write(json.dumps(describe_module(_COMMANDS), indent=2, sort_keys=False, ensure_ascii=False))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
