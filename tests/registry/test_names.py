"""Names, aliases, tag keys and model URIs: an allow-list, and every malicious input refused by name."""

from __future__ import annotations

import pytest

from trustforge.errors import ModelUriError, RegistryError
from trustforge.registry import check_alias, check_name, check_tag_key, format_uri, parse_model_uri
from trustforge.registry._names import check_tag_value, check_version

GOOD = ["iris", "iris-tiny", "Fraud_Model.v2", "a", "0day", "x" * 64, "a.b.c", "a_-_b"]

# (input, what the error must say): traversal, absolute paths, encodings, separators, NUL, look-alikes.
MALICIOUS = [
    ("../x", "path separators"),
    ("..", "'..'"),
    ("a..b", "'..'"),
    ("x/..", "path separators"),
    ("/abs", "path separators"),
    ("/etc/passwd", "path separators"),
    ("%2e%2e", "percent-encoding"),
    ("%2e%2e%2fetc", "percent-encoding"),
    ("%252e%252e", "percent-encoding"),
    ("%252e", "percent-encoding"),
    ("a%2Fb", "percent-encoding"),
    ("%00", "percent-encoding"),
    ("a\\b", "path separators"),
    ("..\\..\\windows", "path separators"),
    ("C:\\temp", "path separators"),
    ("a\x00b", "NUL"),
    ("\x00", "NUL"),
    ("．．", "normalises to a path"),  # full-width full stops: NFKC → ".."
    ("．．／etc", "normalises to a path"),  # full-width solidus
    ("a／b", "normalises to a path"),
    ("‥", "normalises to a path"),  # TWO DOT LEADER: NFKC → ".."
    ("іris", "only ASCII"),  # Cyrillic i
    ("ﬁle", "only ASCII"),  # the fi ligature: NFKC → "file", still refused
    ("ｉｒｉｓ", "only ASCII"),  # full-width letters
    ("iris\u200b", "only ASCII"),  # zero-width space
    ("iris\u202e", "only ASCII"),  # right-to-left override
    ("", "must not be empty"),
    (".hidden", "must not start"),
    (".staging", "must not start"),
    ("-rf", "must not start"),
    ("x" * 65, "longer than 64"),
    ("a b", "only letters"),
    ("a:b", "only letters"),
    ("~root", "only letters"),
    ("a@b", "only letters"),
    ("a\nb", "only letters"),
]


@pytest.mark.parametrize("name", GOOD)
def test_plain_names_are_accepted(name):
    assert check_name(name) == name
    assert check_alias(name if not name.isdigit() else "a" + name) and check_tag_key(name) == name


@pytest.mark.parametrize(("bad", "why"), MALICIOUS, ids=[repr(b)[:30] for b, _ in MALICIOUS])
@pytest.mark.parametrize("check", [check_name, check_alias, check_tag_key], ids=["name", "alias", "tag-key"])
def test_malicious_names_are_refused_naming_the_input_and_the_reason(check, bad, why):
    with pytest.raises(RegistryError) as info:
        check(bad)
    message = str(info.value)
    assert why in message
    shown = repr(bad)
    assert (shown if len(shown) <= 80 else shown[:77] + "...") in message
    assert "\n" not in message and "\x00" not in message


def test_errors_cut_huge_inputs_short():
    with pytest.raises(RegistryError) as info:
        check_name("../" + "a" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("bad", [None, 3, b"iris", ["iris"]])
def test_non_strings_are_refused(bad):
    with pytest.raises(RegistryError, match="must be a string"):
        check_name(bad)


@pytest.mark.parametrize("alias", ["3", "007", "latest"])
def test_aliases_that_read_like_versions_are_reserved(alias):
    with pytest.raises(RegistryError, match="reserved"):
        check_alias(alias)


def test_tag_values_and_versions():
    assert check_tag_value("any text: / .. % is fine in a value") == "any text: / .. % is fine in a value"
    for bad in ("x" * 1025, "a\nb", "a\x00b", 5):
        with pytest.raises(RegistryError, match="tag value"):
            check_tag_value(bad)
    assert check_version(3) == 3
    for bad in (0, -1, True, "3", 2.0):
        with pytest.raises(RegistryError, match="version"):
            check_version(bad)


# ---------------------------------------------------------------------------- model URIs


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("models:/iris/3", ("iris", 3, None)),
        ("models:/iris@champion", ("iris", None, "champion")),
        ("models:/iris", ("iris", None, None)),
        ("iris", ("iris", None, None)),
        ("iris/12", ("iris", 12, None)),
        ("models:/a.b-c_d/1", ("a.b-c_d", 1, None)),
    ],
)
def test_model_uris(uri, parsed):
    assert parse_model_uri(uri) == parsed
    name, version, alias = parsed
    assert parse_model_uri(format_uri(name, version, alias)) == parsed


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("models:/../etc/1", "'..'"),
        ("models:/../../etc/passwd", "'..'"),
        ("models://etc/passwd", "must not be empty"),
        ("models:/%2e%2e/1", "percent-encoding"),
        ("models:/%252e%252e/1", "percent-encoding"),
        ("models:/iris/%2e%2e", "version must be a positive integer"),
        ("models:/iris/../1", "version must be a positive integer"),
        ("models:/iris/1/2", "version must be a positive integer"),
        ("models:/iris/0", "version must be a positive integer"),
        ("models:/iris/01", "version must be a positive integer"),
        ("models:/iris/-1", "version must be a positive integer"),
        ("models:/iris/３", "version must be a positive integer"),  # full-width digit
        ("models:/iris@", "must not be empty"),
        ("models:/iris@../x", "path separators"),
        ("models:/iris@%2e%2e", "percent-encoding"),
        ("models:/iris@a\\b", "path separators"),
        ("models:/iris@3", "reserved"),
        ("models:/", "no model name"),
        ("models:/a\\b/1", "path separators"),
        ("models:/ｉｒｉｓ/1", "only ASCII"),
        ("models:/．．/1", "normalises to a path"),
    ],
)
def test_bad_model_uris_are_refused(uri, why):
    with pytest.raises(RegistryError, match=why.replace(".", r"\.")):
        parse_model_uri(uri)


@pytest.mark.parametrize("uri", ["models:/m/0", "models:/m/-1", "models:/m/abc", "models:/", "models:/m@", "models:/../m/1"])
def test_a_malformed_model_uri_is_a_usage_error_naming_the_forms(uri):
    with pytest.raises(ModelUriError) as raised:
        parse_model_uri(uri)
    assert isinstance(raised.value, RegistryError) and raised.value.exit_code == 2
    assert str(raised.value).startswith(f"model URI {uri!r}: ") and "models:/NAME/VERSION" in str(raised.value)


@pytest.mark.parametrize(
    "args",
    [
        ("models", "show", "{uri}"),
        ("predict", "{uri}", "rows.csv"),
        ("report", "{uri}"),
        ("package", "export", "{uri}", "--format", "onnx"),
        ("serve", "{uri}"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_every_command_exits_2_on_a_malformed_model_uri_and_9_on_a_missing_version(args, workspace, tmp_path):
    """`models show models:/m/0` exited 9, the registry's code, as every command taking a model
    URI did: the parser is the one place, so each command's malformed address is a usage error."""
    from _cli import run_main

    code, out, err = run_main(*(a.format(uri="models:/m/0") for a in args), home=workspace, cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1, (code, out, err)
    assert err.startswith("error: model URI 'models:/m/0': version must be a positive integer") and "models:/NAME@ALIAS" in err
    if args[0] == "models":
        code, _, err = run_main("models", "show", "models:/m/1", home=workspace)
        assert code == 9 and "no such" in err, err
