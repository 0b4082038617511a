"""The device query grammar (README "Device queries"): what parses to what, the errors
with their positions, and a round trip of generated trees through their text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from iotsupport.device_query import ATTRIBUTES
from iotsupport.device_query import parse_query
from iotsupport.device_query import where_clause
from iotsupport.device_query.parser import MAX_DEPTH
from iotsupport.device_query.parser import MAX_LENGTH
from iotsupport.device_query.parser import MAX_TERMS
from iotsupport.device_query.syntax import STAR
from iotsupport.device_query.syntax import And
from iotsupport.device_query.syntax import Attribute
from iotsupport.device_query.syntax import Compare
from iotsupport.device_query.syntax import Constant
from iotsupport.device_query.syntax import Exists
from iotsupport.device_query.syntax import In
from iotsupport.device_query.syntax import InvalidQuery
from iotsupport.device_query.syntax import Node
from iotsupport.device_query.syntax import Not
from iotsupport.device_query.syntax import Number
from iotsupport.device_query.syntax import Or
from iotsupport.device_query.syntax import Path
from iotsupport.device_query.syntax import Relative
from iotsupport.device_query.syntax import Text
from iotsupport.device_query.syntax import unparse

BRIGHTNESS = Path(("display", "brightness"))


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("display.brightness > 80", Compare(BRIGHTNESS, ">", Number(80))),
        (
            'mqtt.broker == "old.local"',
            Compare(Path(("mqtt", "broker")), "==", Text(("old.local",))),
        ),
        ("mqtt.broker == old.local", Compare(Path(("mqtt", "broker")), "==", Text(("old.local",)))),
        (
            'sensors[*].type == "sht40"',
            Compare(Path(("sensors", STAR, "type")), "==", Text(("sht40",))),
        ),
        ("sensors[0].type != x", Compare(Path(("sensors", 0, "type")), "!=", Text(("x",)))),
        ('a["b.c"][2] <= -1.5e3', Compare(Path(("a", "b.c", 2)), "<=", Number(-1500.0))),
        ("exists(ota)", Exists(Path(("ota",)))),
        ("EXISTS ( ota.url )", Exists(Path(("ota", "url")))),
        ("name == lamp*", Compare(Attribute("name"), "==", Text(("lamp", "")))),
        ('name == "a\\*b*"', Compare(Attribute("name"), "==", Text(("a*b", "")))),
        ("last_seen < -1h", Compare(Attribute("last_seen"), "<", Relative(1, "h"))),
        ("$.name == x", Compare(Path(("name",)), "==", Text(("x",)))),
        ("schema_valid == false", Compare(Attribute("schema_valid"), "==", Constant(False))),
        ("model == NULL", Compare(Attribute("model"), "==", Constant(None))),
        (
            "model in (lamp, 'led strip', 3)",
            In(Attribute("model"), (Text(("lamp",)), Text(("led strip",)), Number(3))),
        ),
        ("a not in (1)", In(Path(("a",)), (Number(1),), negated=True)),
        ("a>=1", Compare(Path(("a",)), ">=", Number(1))),
        # and binds tighter than or; not tighter than and.
        (
            "a == 1 or b == 2 and not c == 3",
            Or(
                (
                    Compare(Path(("a",)), "==", Number(1)),
                    And(
                        (
                            Compare(Path(("b",)), "==", Number(2)),
                            Not(Compare(Path(("c",)), "==", Number(3))),
                        )
                    ),
                )
            ),
        ),
        (
            "(a == 1 OR b == 2) AND c == 3",
            And(
                (
                    Or(
                        (
                            Compare(Path(("a",)), "==", Number(1)),
                            Compare(Path(("b",)), "==", Number(2)),
                        )
                    ),
                    Compare(Path(("c",)), "==", Number(3)),
                )
            ),
        ),
        ("android == 1", Compare(Path(("android",)), "==", Number(1))),  # not "and"
    ],
)
def test_the_grammar(query: str, tree: Node) -> None:
    assert parse_query(query) == tree


@pytest.mark.parametrize(
    ("query", "position", "words"),
    [
        ("", 0, "empty"),
        ("display.brightness > ", 21, "expected a value"),
        ("display.brightness 80", 19, "expected an operator"),
        ("name = lamp", 5, "write =="),
        ("(a == 1", 7, "')' to close the '(' at character 0"),
        ("a == 1 b == 2", 7, "expected and, or"),
        ('name == "lamp', 8, "no closing"),
        ("a[x] == 1", 2, "index"),
        ("a. == 1", 2, "expected a key"),
        ("== 1", 0, "expected a name"),
        ("a == 1 and", 10, "expected a name"),
        ("a in 1", 5, "'(' and a list"),
        ("a in (1, 2", 10, "',' or ')'"),
        ('a == "x\\n"', 7, "after \\"),
        ("exists ota", 7, "'(' after exists"),
        ("a == and", 5, "quote it"),
        ('a["x\\"y"] == 1', 2, 'cannot contain "'),
    ],
)
def test_errors_point_at_the_character(query: str, position: int, words: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        parse_query(query)
    assert raised.value.position == position
    assert raised.value.details == {"position": position}
    assert words in raised.value.message


def test_bounds() -> None:
    with pytest.raises(InvalidQuery, match="longer than"):
        parse_query("a == 1 or " * 300 + "a == 1")
    deep = "(" * (MAX_DEPTH + 1) + "a == 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(InvalidQuery, match="nests"):
        parse_query(deep)
    parse_query("(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH)
    many = " or ".join(["a == 1"] * (MAX_TERMS + 1))
    assert len(many) < MAX_LENGTH
    with pytest.raises(InvalidQuery, match="comparisons"):
        parse_query(many)
    with pytest.raises(InvalidQuery, match="at most 3"):
        parse_query("a[*][*][*][*] == 1")


# --- generated trees: text and back -------------------------------------------------------

_KEYS = st.text(
    st.characters(codec="utf-8", exclude_characters='"', exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=8,
)
_STEPS = st.one_of(_KEYS, st.integers(0, 999), st.just(STAR))
_PATHS = st.builds(
    lambda first, rest: Path((first, *rest), rooted=True),
    _KEYS,
    st.lists(_STEPS, max_size=3).filter(lambda steps: sum(s == STAR for s in steps) <= 3),
)
_FIELDS = st.one_of(_PATHS, st.sampled_from([Attribute(name) for name in ATTRIBUTES]))
_PRINTABLE = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=10
)
_VALUES = st.one_of(
    st.integers(-(10**12), 10**12).map(Number),
    st.floats(-1e9, 1e9, allow_nan=False).map(Number),
    st.lists(_PRINTABLE, min_size=1, max_size=3).map(lambda parts: Text(tuple(parts))),
    st.sampled_from([Constant(True), Constant(False), Constant(None)]),
    st.builds(Relative, st.integers(0, 999_999), st.sampled_from("smhdw")),
)
_LEAVES = st.one_of(
    st.builds(Compare, _FIELDS, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), _VALUES),
    st.builds(
        lambda field, values, negated: In(field, tuple(values), negated),
        _FIELDS,
        st.lists(_VALUES, min_size=1, max_size=3),
        st.booleans(),
    ),
    st.builds(Exists, _PATHS),
)


def _tree(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    pairs = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(children.map(Not), pairs.map(And), pairs.map(Or))


_TREES = st.recursive(_LEAVES, _tree, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(_TREES)
def test_round_trip(tree: Node) -> None:
    text = unparse(tree)
    assert parse_query(text) == tree, text
    # Compiling refuses with a query error or builds SQL for both databases, never raises
    # anything else (a value of the wrong kind, a time out of range).
    for dialect in ("sqlite", "postgresql"):
        try:
            where_clause(text, dialect)
        except InvalidQuery as error:
            assert 0 <= error.position <= len(text), text


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_is_a_query_error(text: str) -> None:
    try:
        parse_query(text)
    except InvalidQuery as error:
        assert 0 <= error.position <= len(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("a.b[*]0 ()\"'=!<>-1h,*$ and or not in exists")), max_size=40))
def test_query_like_text_parses_or_is_a_query_error(chars: list[str]) -> None:
    text = "".join(chars)
    try:
        parse_query(text)
    except InvalidQuery as error:
        assert 0 <= error.position <= len(text), text
