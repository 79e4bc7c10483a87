"""The local stack's tables are exactly what the PynamoDB models declare."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from orca_imaging.models import TABLE_MODELS

if TYPE_CHECKING:
    from orca_imaging.local.stack import LocalStack


def _normal(keys: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((k["AttributeName"], k["KeyType"]) for k in keys)


@pytest.mark.parametrize("field", sorted(TABLE_MODELS))
def test_local_table_matches_model(stack: LocalStack, field: str) -> None:
    assert stack.resources is not None
    table: dict[str, Any] = stack.client("dynamodb").describe_table(TableName=stack.resources.values[field])[
        "Table"
    ]
    schema = TABLE_MODELS[field]._get_schema()
    assert _normal(table["KeySchema"]) == _normal(schema["key_schema"])
    local_indexes = {
        i["IndexName"]: (_normal(i["KeySchema"]), i["Projection"]["ProjectionType"])
        for i in table.get("GlobalSecondaryIndexes", [])
    }
    model_indexes = {
        i["index_name"]: (_normal(i["key_schema"]), i["projection"]["ProjectionType"])
        for i in schema.get("global_secondary_indexes", [])
    }
    assert local_indexes == model_indexes
