"""DatasetError: one line naming the file, the item and the field, whatever path it travels."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.execution.cli import fail
from pipeline.files.errors import DatasetError

parts = st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=12))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "bad value"),
        ({"file": "params.yaml"}, "params.yaml: bad value"),
        ({"file": "a.json", "item": "image 7"}, "a.json: image 7: bad value"),
        (
            {"file": "a.json", "item": "image 7", "field": "width"},
            "a.json: image 7: width: bad value",
        ),
        ({"file": "a.json", "field": "width"}, "a.json: width: bad value"),
        ({"item": "line 3", "field": "fold"}, "line 3: fold: bad value"),
        ({"file": "", "item": None, "field": ""}, "bad value"),
    ],
)
def test_message_names_where_in_order(kwargs: dict[str, str | None], expected: str) -> None:
    """File, item and field prefix the message in that order; empty or missing ones are left out."""
    error = DatasetError("bad value", **kwargs)
    assert str(error) == expected
    assert (error.file, error.item, error.field) == tuple(
        kwargs.get(k) for k in ("file", "item", "field")
    )


def test_is_a_value_error() -> None:
    """Callers that catch ValueError (bad input in general) also catch it."""
    with pytest.raises(ValueError, match="a.json: nope"):
        raise DatasetError("nope", file="a.json")


def test_where_is_keyword_only() -> None:
    """The place cannot be passed by position, so a message is never mistaken for a file."""
    with pytest.raises(TypeError):
        DatasetError("message", "file.json")  # type: ignore[misc]


@given(message=st.text(max_size=30), file=parts, item=parts, field=parts)
def test_survives_pickling_between_processes(
    message: str, file: str | None, item: str | None, field: str | None
) -> None:
    """Raised in a worker process, it arrives with the same text and the same fields."""
    error = DatasetError(message, file=file, item=item, field=field)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is DatasetError
    assert str(back) == str(error)
    assert (back.file, back.item, back.field) == (file, item, field)


def test_command_line_prints_it_as_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m pipeline`` turns the error into ``error: <message>`` on stderr, exit code 1."""
    assert fail(str(DatasetError("must be 2", file="params.yaml", field="split.n_splits"))) == 1
    assert capsys.readouterr().err == "error: params.yaml: split.n_splits: must be 2\n"
