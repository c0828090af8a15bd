"""report.json's schema: the generated doc is in step with the models, and a report that
strays from them is refused before it is written."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgekd.reporting.schema import DOC, Report, Row, markdown


def test_the_schema_doc_is_generated_from_the_models():
    assert DOC.read_text() == markdown(), "docs/report-schema.md is stale: run python -m edgekd.reporting.schema"


def test_every_row_key_is_documented():
    for name, field in Row.model_fields.items():
        assert field.description, f"Row.{name} has no description"
        assert f"| `{name}` |" in markdown()


def test_a_report_with_an_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="p51_ms"):
        Row.model_validate({"artifact": "onnx-fp32", "status": "ok", "p51_ms": 1.0})
    with pytest.raises(ValidationError, match="status"):
        Row.model_validate({"artifact": "onnx-fp32", "status": "done"})
    with pytest.raises(ValidationError):
        Report.model_validate({"schema": "edgekd.report/1"})
