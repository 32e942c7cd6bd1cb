"""Property-based tests (hypothesis) of the "bad configuration" promise.

Every invalid params.yaml value or `--set` override -> `ConfigError` (exit code 2) whose message is ONE line
naming the key (`train.steps: ...`); never a TypeError/ValueError/yaml error leaking out. Valid values load
and read back unchanged. The keys come from the config models themselves, so a new key is covered the day it
is added. Each property runs a fixed, derandomised set of examples (no database): same cases every run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
import string
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from pydantic import BaseModel

from ganforge.cli import main
from ganforge.config import (
    INT64,
    LOSS_NAMES,
    MAX_DEPTH,
    Config,
    Section,
    TrainConfig,
    gate_scores,
    key_path,
    load_config,
)
from ganforge.errors import ConfigError
from ganforge.models import DEFAULT_FAMILY, FAMILIES

ROOT = Path(__file__).resolve().parents[1]

if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):  # its caches (no example database here) outside the repo
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "ganforge-hypothesis")

# A fixed profile: derandomised (the same examples every run, on every machine), no example database written
# into the repo, no deadline (the first example imports torch through the model registry).
PER_KEY = settings(  # each property, for each of the ~100 keys
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=5,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
PER_KEY_ALL_MISTAKES = settings(PER_KEY, max_examples=3)  # each example: one value of every kind of mistake (~10)
WIDE = settings(PER_KEY, max_examples=200)  # properties over the whole document / override syntax
WIDE_CLI = settings(  # main() in this process: a little slower per example
    PER_KEY,
    max_examples=100,
    suppress_health_check=[*PER_KEY.suppress_health_check, HealthCheck.function_scoped_fixture],
)

# ---------------------------------------------------------------- the keys, derived from the models


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, Section):
            out += _leaves(ann, (*prefix, name))
        elif prefix == ("train",) and name == "model":  # the union of the model families: each family's keys
            seen = set()
            for family in FAMILIES.values():
                fresh = [leaf for leaf in _leaves(family.config, (*prefix, name)) if leaf[0] not in seen]
                seen |= {path for path, _ in fresh}
                out += fresh
        else:
            out.append(((*prefix, name), field))
    return out


LEAVES = _leaves(Config)
KEYS = [path for path, _ in LEAVES]
FIELDS = dict(LEAVES)
# a key of a model family other than the default (dcgan) is only valid beside `family` naming it
# (a translator's: with a gate on the scores a translator reports)
TRANSLATOR_GATE = {"registry": {"gate": {"min": {"content_accuracy": 0.9}}}}
FAMILY_BASE = {
    ("train", "model", key): {"train": {"model": {"family": name}}, **(TRANSLATOR_GATE if translator else {})}
    for name, family in FAMILIES.items()
    for key in family.config.model_fields
    if key not in FAMILIES[DEFAULT_FAMILY].config.model_fields
    for translator in [family.config.task == "translate"]
}
# path-length regularisation needs a generator with a mapping network
FAMILY_BASE[("train", "pl", "weight")] = {"train": {"model": {"family": "stylegan2"}}}


def section_model(section: tuple[str, ...]) -> type[BaseModel]:
    """The config class of a section (train.model: the default family's)."""
    model: Any = Config
    for part in section:
        train_model = part == "model" and model is TrainConfig
        model = FAMILIES[DEFAULT_FAMILY].config if train_model else model.model_fields[part].annotation
    return model


SECTIONS = sorted({path[:-1] for path in KEYS})  # ("data",), ..., ("registry",), ("registry", "gate")
IDS = [".".join(k) for k in KEYS]


def _metadata(field: Any) -> list[Any]:
    """The field's constraints, and those of an `Annotated[int, Field(...)]` arm of `int | Literal["auto"]`."""
    out = list(field.metadata)
    for arm in get_args(field.annotation):
        if get_origin(arm) is Annotated:
            out += [c for m in get_args(arm)[1:] for c in getattr(m, "metadata", [m])]
    return out


def _bounds(field: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in _metadata(field):
        for attr in ("ge", "gt", "le", "lt", "min_length", "pattern"):
            if getattr(m, attr, None) is not None:
                out[attr] = getattr(m, attr)
    return out


def _shape(field: Any) -> tuple[Any, bool]:
    """(base annotation, accepts None)."""
    ann = field.annotation
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None) and a != Literal["auto"]]  # auto: resolved later
        args = [get_args(a)[0] if get_origin(a) is Annotated else a for a in args]
        if len(args) == 1 and len(args) < len(get_args(ann)) and type(None) not in get_args(ann):
            return args[0], False
        assert len(args) == 1, ann
        return args[0], True
    return ann, False


def _kind(base: Any) -> str:
    if base is bool:
        return "bool"
    if base is int:
        return "int"
    if base is float:
        return "float"
    if base is str:
        return "str"
    if get_origin(base) is Literal:
        return "literal_num" if all(type(a) is int for a in get_args(base)) else "literal_str"
    if get_origin(base) is dict:
        return "dict"
    if get_origin(base) in (tuple, list) and get_origin(get_args(base)[0]) is Literal:
        return "literal_tuple"  # a set of choices, listed (train.augment.policy, data.styles)
    if get_origin(base) is list and get_args(base)[0] is str:
        return "str_list"  # names or patterns (translate.domains, translate.classes)
    raise AssertionError(f"a config field of a kind these tests do not know: {base!r}: teach _kind about it")


def _int_range(b: dict[str, Any]) -> tuple[int, int]:
    lo = b["ge"] if "ge" in b else b["gt"] + 1 if "gt" in b else -INT64
    hi = b["le"] if "le" in b else b["lt"] - 1 if "lt" in b else INT64 - 1
    return lo, hi


# --------------------------------------------------------------------------------- serialising values


def to_flow(value: Any) -> str:
    """`value` as one line of YAML flow style that PyYAML reads back as exactly `value` (a --set value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "." not in text and "e" in text:  # YAML 1.1 floats need a dot: 1e-05 -> 1.0e-05
            mant, _, exp = text.partition("e")
            text = f"{mant}.0e{exp if exp[0] in '+-' else '+' + exp}"
        return text
    if isinstance(value, str):
        out = []
        for c in value:
            if c in '"\\':
                out.append("\\" + c)
            elif " " <= c <= "~":
                out.append(c)
            elif ord(c) <= 0xFFFF:
                out.append(f"\\u{ord(c):04x}")
            else:
                out.append(f"\\U{ord(c):08x}")
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(to_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_flow(k)}: {to_flow(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for part in reversed(path):
        value = {part: value}
    return value


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("config_props")
    (d / "empty.yaml").write_text("")
    return d


def put(f: Path, data: str | bytes) -> Path:
    """Write `data` to `f` in place, then cut it to length: truncating on open (write_text) made the filesystem
    here flush first, ~3 ms a write, which thousands of examples feel; this is ~0.03 ms."""
    data = data.encode() if isinstance(data, str) else data
    with open(f, "r+b" if f.exists() else "wb") as out:
        out.write(data)
        out.truncate()
    return f


def outcome(fn) -> Config | ConfigError:
    """Config, or the ConfigError; anything else propagates and fails the test with its traceback."""
    try:
        return fn()
    except ConfigError as exc:
        return exc


def assert_one_line(err: ConfigError, *needles: str) -> str:
    msg = str(err)
    assert msg and len(msg.splitlines()) == 1 and "\r" not in msg and "\n" not in msg, repr(msg)
    assert err.exit_code == 2
    for needle in needles:
        assert needle in msg, f"{needle!r} not named in {msg!r}"
    return msg


def both_routes(work: Path, path: tuple[str, ...], value: Any, base: dict[str, Any] | None = None):
    """Load `value` at key `path` from a params file, then as `--set path=value` on a file without it."""
    doc = merge(base or {}, nest(path, value))
    via_file = outcome(lambda: load_config(put(work / "params.yaml", yaml.safe_dump(doc))))
    under = put(work / "base.yaml", yaml.safe_dump(base)) if base else work / "empty.yaml"
    via_set = outcome(lambda: load_config(under, [f"{'.'.join(path)}={to_flow(value)}"]))
    return via_file, via_set


# ------------------------------------------------------------------------------------ valid values

VALID_SPECIAL: dict[tuple[str, ...], st.SearchStrategy] = {
    ("data", "resolution"): st.sampled_from([16, 32, 64, 128, 256, 512]),
    ("library", "video_size"): st.integers(8, 1024).map(lambda n: 2 * n),
    ("train", "batch_size"): st.integers(1, 32768).map(lambda n: 2 * n),  # a multiple of the default pack (2)
    ("train", "model", "pack"): st.sampled_from([1, 2, 4, 8]),  # divides the default batch_size (64)
    ("train", "model", "family"): st.sampled_from(sorted(FAMILIES)),
    ("train", "device"): st.one_of(
        st.sampled_from(["auto", "cpu", "cuda", "mps"]), st.integers(0, 99).map(lambda i: f"cuda:{i}")
    ),
}
# a value that needs others beside it to be valid (the section's cross-key rules)
COMPANIONS: dict[tuple[str, ...], dict[Any, dict[str, Any]]] = {
    ("data", "kind"): {"video": {"data": {"source": "moving_digits"}}},
    ("data", "source"): {
        "folder": {"data": {"path": "images"}},
        "torchvision": {"data": {"dataset": "MNIST"}},
        "moving_digits": {"data": {"kind": "video"}},
        "stacked_digits": {"data": {"channels": 3}},
        "video_folder": {"data": {"kind": "video", "path": "videos"}},
    },
    # an unconditional model reports no class accuracy: its gate cannot bound one
    ("train", "conditional"): {False: {"registry": {"gate": {"min": {"precision": 0.6}}}}},
    # a translator reports content and domain accuracy, not class accuracy
    ("train", "model", "family"): {f: TRANSLATOR_GATE for f in ("cyclegan", "stargan")},
}

finite = st.floats(allow_nan=False, allow_infinity=False)
no_nul_text = st.text(max_size=30).filter(lambda s: "\x00" not in s)


@functools.cache
def valid_values(path: tuple[str, ...]) -> st.SearchStrategy:
    if path in VALID_SPECIAL:
        return VALID_SPECIAL[path]
    if path == ("train", "loss"):
        from ganforge.training.objective import LOSSES

        return st.sampled_from(sorted(LOSSES))
    field = FIELDS[path]
    base, nullable = _shape(field)
    b = _bounds(field)
    kind = _kind(base)
    if kind == "bool":
        s = st.booleans()
    elif kind == "int":
        s = st.integers(*_int_range(b))
    elif kind == "float":
        lo = b.get("ge", b.get("gt", -1e15))
        hi = b.get("le", b.get("lt", 1e15))
        s = st.floats(lo, hi, exclude_min="gt" in b, exclude_max="lt" in b, allow_nan=False, allow_infinity=False)
    elif kind == "str":
        if "pattern" in b:
            s = st.from_regex(b["pattern"], fullmatch=True).filter(lambda v: "\x00" not in v)
        else:
            s = no_nul_text.filter(lambda v: len(v) >= b.get("min_length", 0))
    elif kind == "literal_tuple":
        s = st.lists(st.sampled_from(get_args(get_args(base)[0])), min_size=1, unique=True)
    elif kind == "str_list":
        s = st.lists(st.from_regex(r"[a-z][a-z0-9_*]{0,10}", fullmatch=True), unique=True, max_size=4)
    elif kind.startswith("literal"):
        s = st.sampled_from(get_args(base))
    else:  # dict of score name -> bound: the scores evaluate reports for the default (conditional image) model
        s = st.dictionaries(st.sampled_from(gate_scores(Config())), finite, max_size=4)
    return st.one_of(st.none(), s) if nullable else s


@pytest.mark.parametrize("path", KEYS, ids=IDS)
@PER_KEY
@given(data=st.data())
def test_valid_values_load_and_read_back(work, path, data):
    value = data.draw(valid_values(path), label=".".join(path))
    base = COMPANIONS.get(path, {}).get(value) if isinstance(value, str | int) else None
    base = base or FAMILY_BASE.get(path)
    via_file, via_set = both_routes(work, path, value, base)
    for got in (via_file, via_set):
        assert isinstance(got, Config), f"{'.'.join(path)}={value!r} was refused: {got}"
        node: Any = got
        for part in path:
            node = getattr(node, part)
        assert (list(node) if isinstance(node, tuple) else node) == value


# ---------------------------------------------------------------------------------- invalid values

BOOL_WORDS = {"0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes"}


def _not_a_number(s: str) -> bool:
    try:
        float(s.replace("_", ""))
    except ValueError:
        return True
    return False


words = st.text(string.ascii_letters + string.punctuation + " éß→", min_size=1, max_size=20).filter(
    lambda s: s != "auto"  # a recipe key's value: the model family's
)
non_numbers = words.filter(_not_a_number)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), finite, st.text(max_size=10))
lists = st.lists(scalars, max_size=3)
mappings = st.dictionaries(st.text(max_size=8), scalars, min_size=1, max_size=3)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
huge_ints = st.one_of(st.integers(min_value=INT64), st.integers(max_value=-INT64 - 1))
non_integral = finite.filter(lambda x: not x.is_integer())
nul_text = st.tuples(no_nul_text, no_nul_text).map(lambda t: f"{t[0]}\x00{t[1]}")


@functools.cache
def invalid_values(path: tuple[str, ...]) -> tuple[tuple[str, st.SearchStrategy], ...]:
    """(kind of mistake, values) that are wrong for `path` whatever the rest of the config says."""
    field = FIELDS[path]
    base, nullable = _shape(field)
    b = _bounds(field)
    kind = _kind(base)
    wrong: dict[str, st.SearchStrategy] = {} if kind in ("literal_tuple", "str_list") else {"list": lists}
    if kind != "dict":
        wrong["mapping"] = mappings
    if not nullable:
        wrong["null"] = st.none()
    if kind in ("int", "float", "literal_num"):
        wrong |= {"boolean": st.booleans(), "words": non_numbers, "nan/inf": non_finite, "huge int": huge_ints}
    if kind == "int":
        lo, hi = _int_range(b)
        wrong |= {
            "fraction": non_integral,
            "below range": st.integers(max_value=lo - 1),
            "above range": st.integers(min_value=hi + 1),
        }
    if kind == "float" and ("ge" in b or "gt" in b):
        lo = b.get("ge", b.get("gt"))
        wrong["below range"] = st.floats(max_value=lo, exclude_max="ge" in b, allow_nan=False, allow_infinity=False)
    if kind == "float" and ("le" in b or "lt" in b):
        hi = b.get("le", b.get("lt"))
        wrong["above range"] = st.floats(min_value=hi, exclude_min="le" in b, allow_nan=False, allow_infinity=False)
    if kind == "literal_num":
        wrong |= {"other int": st.integers().filter(lambda v: v not in get_args(base)), "fraction": non_integral}
    if kind == "bool":
        wrong |= {
            "int": st.integers().filter(lambda v: v not in (0, 1)),
            "float": finite.filter(lambda v: v not in (0.0, 1.0)),
            "nan/inf": non_finite,
            "words": words.filter(lambda s: s.lower() not in BOOL_WORDS),
        }
    if kind in ("str", "literal_str"):
        # `library.model: 3` is version 3: only a negative number is wrong there
        ints = st.integers(max_value=-1) if path == ("library", "model") else st.integers()
        wrong |= {"boolean": st.booleans(), "int": ints, "float": finite, "nan/inf": non_finite, "NUL": nul_text}
    if kind == "literal_str" and path != ("train", "model", "family"):  # family: any family's name is valid
        wrong["unknown choice"] = words.filter(lambda s: s not in get_args(base))
    if kind == "str_list":
        wrong |= {"scalar": st.one_of(st.booleans(), st.integers(), finite), "list of numbers": st.just([1, 2])}
    if kind == "literal_tuple":
        choices = get_args(get_args(base)[0])
        wrong |= {
            "scalar": st.one_of(st.booleans(), st.integers(), finite),
            "unknown choice": st.lists(words.filter(lambda w: w not in choices), min_size=1, max_size=3),
            "repeated choice": st.sampled_from(choices).map(lambda c: [c, c]),
            "none chosen": st.just([]),
        }
    if kind == "str" and "pattern" in b:
        wrong["pattern"] = words.filter(lambda s: not re.fullmatch(b["pattern"], s))
    if kind == "str" and b.get("min_length"):
        wrong["empty"] = st.just("")
    if kind == "dict":
        bad_numbers = st.one_of(st.booleans(), non_finite, non_numbers, lists)
        wrong |= {
            "scalar": st.one_of(st.booleans(), st.integers(), finite, words),
            "bad number": st.dictionaries(st.text(max_size=8), bad_numbers, min_size=1, max_size=3),
            "int key": st.dictionaries(st.integers(), finite, min_size=1, max_size=3),
        }
    special = {
        ("data", "resolution"): st.integers(16, 512).filter(lambda v: v & (v - 1)),
        ("library", "video_size"): st.integers(8, 1023).map(lambda n: 2 * n + 1),
        ("train", "batch_size"): st.integers(0, 32767).map(lambda n: 2 * n + 1),  # default pack is 2
        ("train", "model", "pack"): st.sampled_from([3, 5, 6, 7]),  # does not divide the default batch_size (64)
        ("train", "model", "family"): words.filter(lambda s: s not in FAMILIES),
        ("train", "device"): st.one_of(
            st.sampled_from(["tpu", "gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "cuda:²", "cpu:0", "auto:1", ""]),
            words.filter(lambda s: not re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]+)?", s)),
        ),
        ("train", "loss"): words.filter(lambda s: s not in LOSS_NAMES),
    }
    if path in special:
        wrong["rule of the key"] = special[path]
    return tuple(wrong.items())


@pytest.mark.parametrize("path", KEYS, ids=IDS)
@PER_KEY_ALL_MISTAKES
@given(data=st.data())
def test_invalid_values_name_the_key(work, path, data):
    """Each example draws one wrong value of every kind that applies to the key (~10): all of them fail."""
    key = ".".join(path)
    for mistake, values in invalid_values(path):
        value = data.draw(values, label=f"{key} ({mistake})")
        for got in both_routes(work, path, value, FAMILY_BASE.get(path)):
            assert isinstance(got, ConfigError), f"{key}={value!r} ({mistake}) was accepted"
            assert_one_line(got, key)


anything = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), huge_ints, st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.mark.parametrize("path", KEYS, ids=IDS)
@PER_KEY
@given(value=anything)
def test_any_value_loads_or_names_the_key(work, path, value):
    """Whatever YAML can hold, at any key: a valid Config or a one-line error naming that key."""
    via_file, via_set = both_routes(work, path, value, FAMILY_BASE.get(path))
    assert isinstance(via_file, Config) == isinstance(via_set, Config), (via_file, via_set)
    for got in (via_file, via_set):
        if isinstance(got, ConfigError):
            assert_one_line(got, ".".join(path))
    if isinstance(via_file, Config):
        assert via_file == via_set


# ------------------------------------------------------------------------------ unknown keys, sections

any_key = st.one_of(st.text(max_size=15), st.integers(), st.booleans())
set_key = st.text(max_size=15).filter(lambda s: s.strip() == s and s and "." not in s and "=" not in s)


@WIDE
@given(section=st.sampled_from(SECTIONS), key=any_key, value=scalars)
def test_unknown_key_in_a_file_is_named(work, section, key, value):
    model = section_model(section)
    assume(key not in model.model_fields)
    f = work / "params.yaml"
    put(f, yaml.safe_dump(nest(section, {key: value})))
    got = outcome(lambda: load_config(f))
    assert isinstance(got, ConfigError)
    named = key_path([*section, key])
    assert_one_line(got, named)
    if isinstance(key, str):
        assert f"{named}: unknown key" in str(got)


@WIDE
@given(section=st.sampled_from([(), *SECTIONS]), key=set_key, value=scalars)
def test_unknown_key_or_section_in_an_override_is_named(work, section, key, value):
    model = section_model(section)
    assume(key not in model.model_fields)
    got = outcome(lambda: load_config(work / "empty.yaml", [f"{'.'.join([*section, key])}={to_flow(value)}"]))
    assert isinstance(got, ConfigError)
    assert_one_line(got, f"{key_path([*section, key])}: unknown key")


def test_key_path_is_plain_for_plain_keys_and_quoted_otherwise():
    assert key_path(["registry", "gate", "min", "recall"]) == "registry.gate.min.recall"
    assert key_path(["train", 3]) == "train.3"
    assert key_path(["train", "a\nb"]) == "train.'a\\nb'"
    assert key_path(["train", "a.b"]) == "train.'a.b'"
    assert key_path(["train", ""]) == "train.''"
    assert key_path(["train", " x"]) == "train.' x'"


# ----------------------------------------------------------------------------- malformed --set strings

ident = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
NOT_YAML = [
    "[1",
    "{a",
    "{a: 1",
    "]",
    "@x",
    "`x",
    "%x",
    "'unclosed",
    '"unclosed',
    "*nothing",
    "&a [*a]",
    "a: b: c",
    "!!float x",
    "!!int 1.5",
    "!!bool maybe",
    "!!timestamp x",
    "2001-02-30",
    "!!python/object/apply:os.system [ls]",
    "!!python/name:os.system",
    "!foo {a: 1}",
    "!!set [1]",
    "{a: 1, a: 2}",
    "1\n---\n2",
    "\t[",
    "\x00",
    "\x7f",
    "\ufffe",
    "\ud800",
    "[" * 100 + "]" * 100,
    "{a: " * 40 + "1" + "}" * 40,
]
malformed_set = st.one_of(
    st.text(max_size=40).filter(lambda s: "=" not in s),  # no '='
    st.text(max_size=10).map(lambda s: "=" + s),  # empty key
    st.tuples(st.sampled_from([" ", "\t", ""]), st.text(max_size=10)).map(lambda t: f"{t[0]}={t[1]}"),
    st.tuples(st.lists(ident, min_size=1, max_size=3), st.integers(0, 3), st.sampled_from(["", " ", "\t"])).map(
        lambda t: ".".join([*t[0][: t[1]], t[2], *t[0][t[1] :]]) + "=1"  # an empty part: a..b=1, .a=1, a. .b=1
    ),
    st.integers(1_000, 200_000).map(lambda n: "x" * n),  # very long, no '='
)


@WIDE
@given(item=malformed_set)
def test_malformed_override_syntax(work, item):
    got = outcome(lambda: load_config(work / "empty.yaml", [item]))
    assert isinstance(got, ConfigError), repr(item)
    msg = assert_one_line(got, "--set ", "expected key.path=value")
    assert len(msg) < 300


@pytest.mark.parametrize("raw", NOT_YAML, ids=range(len(NOT_YAML)))
@pytest.mark.parametrize("key", ["train.steps", "data.path", "registry.gate.min"])
def test_override_values_that_are_not_yaml(work, key, raw):
    got = outcome(lambda: load_config(work / "empty.yaml", [f"{key}={raw}"]))
    assert isinstance(got, ConfigError), raw
    assert_one_line(got, key)


@WIDE
@given(path=st.sampled_from(KEYS), raw=st.one_of(st.text(max_size=40), st.sampled_from(NOT_YAML)))
def test_any_override_text_loads_or_names_the_key(work, path, raw):
    """Unicode, control characters, YAML syntax: whatever follows `key=`."""
    key = ".".join(path)
    got = outcome(lambda: load_config(work / "empty.yaml", [f"{key}={raw}"]))
    if isinstance(got, ConfigError):
        assert_one_line(got, key)


@WIDE
@given(item=st.text(max_size=60))
def test_any_override_string_loads_or_fails_in_one_line(work, item):
    got = outcome(lambda: load_config(work / "empty.yaml", [item]))
    if isinstance(got, ConfigError):
        assert_one_line(got)


def test_overriding_inside_a_value_names_it(work):
    got = outcome(lambda: load_config(work / "empty.yaml", ["train.steps=3", "train.steps.x=1"]))
    assert_one_line(got, "--set train.steps.x: train.steps is a value, not a section")


def test_very_long_override_value_is_shortened(work):
    got = outcome(lambda: load_config(work / "empty.yaml", ["train.device=" + "é" * 100_000]))
    msg = assert_one_line(got, "train.device")
    assert len(msg) < 400


# --------------------------------------------------------------------------- malformed params.yaml


BAD_DOCUMENTS = {
    "a list": ("- data\n- train\n", "expected a mapping"),
    "a scalar": ("just words\n", "expected a mapping"),
    "a number": ("3\n", "expected a mapping"),
    "section is a scalar": ("train: 5\n", "train: expected a section (a mapping of key: value) (got 5)"),
    "section is a list": ("train: [steps, 3]\n", "train: expected a section"),
    "section is null": ("train:\n", "train: expected a section"),
    "nested section is a scalar": ("registry:\n  gate: strict\n", "registry.gate: expected a section"),
    "misspelt key": ("train:\n  stpes: 3\n", "train.stpes: unknown key (did you mean train.steps?)"),
    "bool key": ("data: {false: 1}\n", "data.False: a key must be a name (got False)"),
    "unclosed flow": ("train: [unclosed\n", "not valid YAML at line"),
    "tab indent": ("train:\n\tsteps: 1\n", "not valid YAML at line 2"),
    "bad indent": ("train:\n  steps: 1\n bogus: 2\n", "not valid YAML at line"),
    "two documents": ("train: {}\n---\ndata: {}\n", "not valid YAML at line"),
    "undefined alias": ("train: *nope\n", "not valid YAML"),
    "python tag": ("train: !!python/object/apply:os.system [ls]\n", "train: could not determine a constructor"),
    "bad timestamp": ("train:\n  steps: 2001-02-30\n", "train.steps: cannot read '2001-02-30' as timestamp (line 2)"),
    "bad float tag": ("train:\n  lr_g: !!float fast\n", "train.lr_g: cannot read 'fast' as float"),
    "duplicate key": ("train:\n  steps: 1\n  steps: 2\n", "train.steps: duplicate key (line 3; first at line 2)"),
    "duplicate section": ("train: {}\ndata: {}\ntrain: {}\n", "train: duplicate key (line 3; first at line 1)"),
    "duplicate flow key": ("registry: {gate: {min: {recall: 1, recall: 2}}}\n", "registry.gate.min.recall: duplicate"),
    "recursive alias": ("train: &t {steps: *t}\n", "train: found unconstructable recursive node (line 1)"),
    "deep nesting": ("train: " + "[" * 60 + "]" * 60 + "\n", f"nested more than {MAX_DEPTH} levels"),
    "very deep nesting": ("train: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    "NUL byte": ("train:\n  steps: 1\x00\n", "not valid YAML text"),
    "control character": ("train: {device: \x07}\n", "not valid YAML text"),
    "unhashable key": ("train: {[1, 2]: 3}\n", "line 1"),
    "int key": ("train: {1: 3}\n", "train.1"),
    "binary garbage": (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x80", "not valid YAML text"),
    "latin-1": ("train: {device: caf\xe9}\n".encode("latin-1"), "not valid YAML text"),
    "a lone surrogate in UTF-8": (b"train: {device: \xed\xa0\x80}\n", "not valid YAML text"),
}


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
def test_malformed_documents(work, name):
    text, needle = BAD_DOCUMENTS[name]
    f = work / "bad.yaml"
    put(f, text if isinstance(text, bytes) else text.encode())
    got = outcome(lambda: load_config(f))
    assert isinstance(got, ConfigError)
    assert_one_line(got, str(f), needle)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "{}\n", "\ufefftrain: {}\n"])
def test_empty_documents_are_the_defaults(work, text):
    f = work / "blank.yaml"
    put(f, text)
    assert load_config(f) == Config()


def test_utf16_with_bom_reads(work):
    f = work / "utf16.yaml"
    put(f, "train: {steps: 7}\n".encode("utf-16"))
    assert load_config(f).train.steps == 7


def test_merge_keys_and_aliases_are_not_duplicates(work):
    f = work / "merge.yaml"
    put(f, "train: &t {steps: 5, seed: 1}\nfeatures: {<<: {seed: 2, epochs: 4}, epochs: 3}\n")
    cfg = load_config(f)
    assert (cfg.train.steps, cfg.features.seed, cfg.features.epochs) == (5, 2, 3)  # a key beats a merged one
    put(f, "data: &d {seed: 3}\nlibrary: *d\n")
    assert load_config(f).library.seed == 3


@WIDE
@given(data=st.binary(max_size=200))
def test_any_bytes_load_or_fail_in_one_line(work, data):
    f = work / "garbage.yaml"
    put(f, data)
    got = outcome(lambda: load_config(f))
    if isinstance(got, ConfigError):
        assert_one_line(got, str(f))


GOOD = yaml.safe_dump({"train": {"steps": 5, "lr_g": 0.001}, "registry": {"gate": {"min": {"recall": 0.5}}}})
MUTATIONS = [*"\t[]{}:*&!%@`'\"#\n?|>,-\x00\x85\u2028é", ": :", "- ", "!!", "\n  ", "<<: "]


@WIDE
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD)), st.sampled_from(MUTATIONS)), min_size=1, max_size=3),
)
def test_mutated_documents_load_or_fail_in_one_line(work, edits):
    text = GOOD
    for pos, insert in edits:
        text = text[:pos] + insert + text[pos:]
    f = work / "mutated.yaml"
    put(f, text)
    got = outcome(lambda: load_config(f))
    if isinstance(got, ConfigError):
        assert_one_line(got, str(f))


@WIDE
@given(section=st.sampled_from(SECTIONS), key=ident, v1=scalars, v2=scalars)
def test_duplicate_keys_are_named(work, section, key, v1, v2):
    indent = "  " * len(section)
    head = "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(section))
    f = work / "dup.yaml"
    put(f, f"{head}{indent}{key}: {to_flow(v1)}\n{indent}{key}: {to_flow(v2)}\n")
    got = outcome(lambda: load_config(f))
    assert_one_line(got, f"{key_path([*section, key])}: duplicate key")


# -------------------------------------------------------------------------- the CLI, in this process


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_cli_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli_props")
    (d / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (d / "garbage.yaml").write_bytes(b"\x00\xffnot yaml\x80")
    (d / "dup.yaml").write_text("train:\n  steps: 1\n  steps: 2\n")
    return d


@pytest.fixture
def in_project(project, monkeypatch) -> Path:
    monkeypatch.chdir(project)
    return project


@WIDE_CLI
@given(path=st.sampled_from(KEYS), data=st.data())
def test_cli_invalid_override_exit_2_one_line(in_project, path, data):
    value = data.draw(st.one_of(*(values for _, values in invalid_values(path))), label="value")
    key = ".".join(path)
    family = (
        [f"--set=train.model.family={FAMILY_BASE[path]['train']['model']['family']}"] if path in FAMILY_BASE else []
    )
    if path in FAMILY_BASE and "registry" in FAMILY_BASE[path]:
        family.append("--set=registry.gate.min={content_accuracy: 0.9}")
    code, _, err = run_cli(["config", *family, f"--set={key}={to_flow(value)}"])
    assert_cli_error(code, err, key)


@WIDE_CLI
@given(item=st.one_of(malformed_set, st.text(max_size=40)))
def test_cli_any_override_exit_0_or_2(in_project, item):
    code, _, err = run_cli(["config", f"--set={item}"])
    if code != 0:
        assert_cli_error(code, err)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["prepare", "--set", "data.resolution=33"], "params.yaml: data.resolution"),
        (["train", "--set", "train.steps=0"], "train.steps"),
        (["train", "--device", "tpu"], "train.device"),
        (["train", "--set", "train.lr_g=.nan"], "--set train.lr_g: expected a finite number"),
        (["features", "--set", "features.epochs=true"], "features.epochs: expected a number, not true/false"),
        (["evaluate", "--set", "evaluate.n_fake=99999999999999999999999"], "evaluate.n_fake: out of range"),
        (["evaluate", "--set", "evaluate.fvd_sha256=abc"], "evaluate.fvd_sha256"),
        (["library", "build", "--model", "no such model!"], "library.model"),
        (["library", "ls", "--set", "library.dir="], "library.dir"),
        (["registry", "list", "--set", "registry.model_name=-x"], "registry.model_name"),
        (["report", "--set", "tracking.enabled=maybe"], "tracking.enabled"),
        (["config", "--set", "train..steps=1"], "--set 'train..steps=1': expected key.path=value"),
        (["config", "--set", "train.steps"], "--set 'train.steps': expected key.path=value"),
        (["config", "--set", "bogus.x=1"], "bogus: unknown key"),
        (["config", "--set", "train.steps=[1"], "--set train.steps: not valid YAML"),
        (["config", "--set", "train.a\nb=1"], "train.'a\\nb': unknown key"),
        (["config", "--set", "train.data_path\u2028=1"], "unknown key"),
        (["config", "--params", "missing.yaml"], "missing.yaml: no such params file"),
        (["config", "--params", "garbage.yaml"], "garbage.yaml: not valid YAML text"),
        (["config", "--params", "dup.yaml"], "dup.yaml: train.steps: duplicate key (line 3; first at line 2)"),
        (["config", "--params", "."], "cannot read"),
        (["config", "--params", "a\x00b"], "not a usable path"),
    ],
)
def test_cli_config_errors(in_project, capsys, argv, needle):
    code = main(argv)
    captured = capsys.readouterr()
    assert_cli_error(code, captured.err, needle)
    assert not (in_project / "data").exists() and not (in_project / "models").exists()  # no work started


def test_cli_usage_errors_exit_2(in_project, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["prepare", "--no-such-flag"])
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cli_valid_config_prints_and_exits_0(in_project):
    code, out, err = run_cli(["config", "--set", "train.steps=7", "--set", "registry.gate.min={recall: 0.5}"])
    assert code == 0 and err == ""
    assert yaml.safe_load(out.rpartition("config:")[0])["registry"]["gate"]["min"] == {"recall": 0.5}


# ------------------------------------------------------------------- the CLI, in real processes (few)


def test_cli_subprocesses_exit_2_with_one_line(project):
    """A handful of real `python -m ganforge` runs, started together (each pays the interpreter's start)."""
    cases = [
        # all fail before validation, which imports torch through the model registry (seconds): these take
        # well under a second each; test_config.py runs one that fails validation in a real process
        (["prepare", "--set", "train.bad\x7fkey"], "error: --set 'train.bad\\x7fkey': expected key.path=value"),
        (["prepare", "--set", "train..steps=1"], "error: --set 'train..steps=1': expected key.path=value"),
        (["prepare", "--set", "train.steps=[1"], "error: --set train.steps: not valid YAML"),
        (["train", "--params", "garbage.yaml"], "error: garbage.yaml: not valid YAML text"),
        (["evaluate", "--params", "dup.yaml"], "error: dup.yaml: train.steps: duplicate key"),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ganforge", *argv],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv, _ in cases
    ]
    usage = subprocess.run(
        [sys.executable, "-m", "ganforge", "prepare", "--bogus"], cwd=project, capture_output=True, text=True
    )
    assert usage.returncode == 2 and "Traceback" not in usage.stderr and "unrecognized arguments" in usage.stderr
    for (_, prefix), proc in zip(cases, procs, strict=True):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert "Traceback" not in err
        assert len(err.splitlines()) == 1 and err.startswith(prefix), repr(err)
    assert not (project / "data").exists()
