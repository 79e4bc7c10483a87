"""Template assertions on the properties that matter: keys, encryption, TLS, DLQ, PITR, auth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from orca_imaging.models import TABLE_MODELS
from orca_imaging.observability import METRICS_NAMESPACE, SERVICE
from orca_imaging.resources import FUNCTIONS, QUEUES, ROUTES, SCHEDULES, function

if TYPE_CHECKING:
    from tests.infra.conftest import Synth


def _keys(keys: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((k["AttributeName"], k["KeyType"]) for k in keys)


@pytest.mark.parametrize("field", sorted(TABLE_MODELS))
def test_each_cdk_table_has_the_pynamodb_models_keys_and_indexes(synth: Synth, field: str) -> None:
    table = synth.json["Resources"][synth.logical_id(synth.stack.tables.tables[field])]["Properties"]
    schema = TABLE_MODELS[field]._get_schema()
    assert _keys(table["KeySchema"]) == _keys(schema["key_schema"])
    assert sorted(map(tuple, (a.values() for a in table["AttributeDefinitions"]))) == sorted(
        map(tuple, (a.values() for a in schema["attribute_definitions"]))
    )
    cdk_indexes = {
        i["IndexName"]: (_keys(i["KeySchema"]), i["Projection"]["ProjectionType"])
        for i in table.get("GlobalSecondaryIndexes", [])
    }
    model_indexes = {
        i["index_name"]: (_keys(i["key_schema"]), i["projection"]["ProjectionType"])
        for i in schema.get("global_secondary_indexes", [])
    }
    assert cdk_indexes == model_indexes


def test_tables_are_kms_encrypted_with_pitr(synth: Synth) -> None:
    tables = synth.resources("AWS::DynamoDB::Table")
    assert len(tables) == len(TABLE_MODELS)
    for table in tables.values():
        props = table["Properties"]
        assert (
            props["SSESpecification"]["SSEEnabled"] is True and props["SSESpecification"]["SSEType"] == "KMS"
        )
        assert "KMSMasterKeyId" in props["SSESpecification"]
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_data_buckets_use_the_customer_key_block_public_access_and_are_versioned(synth: Synth) -> None:
    key_id = synth.logical_id(synth.stack.storage.key)
    for bucket in synth.stack.storage.buckets.values():
        props = synth.json["Resources"][synth.logical_id(bucket)]["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]
        assert rule["SSEAlgorithm"] == "aws:kms" and rule["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
        assert props["VersioningConfiguration"]["Status"] == "Enabled"
        assert all(props["PublicAccessBlockConfiguration"].values())
        rules = {r.get("Id"): r for r in props["LifecycleConfiguration"]["Rules"]}
        assert rules["AbortIncompleteMultipart"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 3
    originals = synth.json["Resources"][synth.logical_id(synth.stack.storage.buckets["originals_bucket"])][
        "Properties"
    ]
    cors = originals["CorsConfiguration"]["CorsRules"][0]
    assert {"POST", "PUT"} <= set(cors["AllowedMethods"]) and cors["ExposedHeaders"] == ["ETag"]
    assert synth.stack.storage.key.node.default_child.enable_key_rotation is True  # type: ignore[union-attr]


def test_every_bucket_denies_requests_without_tls(synth: Synth) -> None:
    policies = synth.resources("AWS::S3::BucketPolicy")
    assert len(policies) == len(synth.resources("AWS::S3::Bucket"))
    for policy in policies.values():
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)


def test_intake_queues_are_encrypted_and_dead_letter_after_max_receives_with_an_alarm(synth: Synth) -> None:
    for spec in QUEUES:
        construct = synth.stack.queues[spec.construct_id]
        queue = synth.json["Resources"][synth.logical_id(construct.queue)]["Properties"]
        dlq_id = synth.logical_id(construct.dead_letters)
        assert queue["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
            "maxReceiveCount": spec.max_receive_count,
        }
        assert queue["KmsMasterKeyId"] and synth.json["Resources"][dlq_id]["Properties"]["KmsMasterKeyId"]
        assert queue["VisibilityTimeout"] == spec.visibility_timeout()
        alarm = synth.json["Resources"][synth.logical_id(construct.dead_letter_alarm)]["Properties"]
        assert alarm["Namespace"] == "AWS/SQS" and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert alarm["AlarmActions"] == [{"Ref": synth.logical_id(synth.stack.alarms)}]
    # Work a consumer settles as failed on the last receive never reaches the dead letters:
    # its own metric pages the operators instead.
    for spec in QUEUES:
        gave_up = synth.stack.queues[spec.construct_id].gave_up_alarm
        if spec.gave_up_metric is None:
            assert gave_up is None
            continue
        assert gave_up is not None
        alarm = synth.json["Resources"][synth.logical_id(gave_up)]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"]) == (METRICS_NAMESPACE, spec.gave_up_metric)
        assert alarm["Dimensions"] == [{"Name": "service", "Value": SERVICE}]
        assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
            "Sum",
            0,
            "GreaterThanThreshold",
        )
        assert alarm["AlarmActions"] == [{"Ref": synth.logical_id(synth.stack.alarms)}]
    assert {spec.gave_up_metric for spec in QUEUES} >= {"ProcessingFailed"}
    mappings = synth.resources("AWS::Lambda::EventSourceMapping")
    assert all(
        m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings.values()
    )
    for spec in QUEUES:  # each queue feeds its consumer, and only its senders may send to it
        queue_arn = {"Fn::GetAtt": [synth.logical_id(synth.stack.queues[spec.construct_id].queue), "Arn"]}
        consumer = synth.logical_id(synth.stack.functions[spec.consumer])
        assert [
            m["Properties"]["FunctionName"]
            for m in mappings.values()
            if m["Properties"]["EventSourceArn"] == queue_arn
        ] == [{"Ref": consumer}]
        senders = {
            role["Ref"]
            for policy in synth.resources("AWS::IAM::Policy").values()
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if "sqs:SendMessage" in _list(statement["Action"]) and statement["Resource"] == queue_arn
            for role in policy["Properties"]["Roles"]
        }
        assert senders == {synth.logical_id(synth.stack.functions[f].role) for f in spec.senders}
    notifications = next(iter(synth.resources("Custom::S3BucketNotifications").values()))["Properties"]
    config = notifications["NotificationConfiguration"]["QueueConfigurations"][0]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "clinic/"}]


def test_every_api_method_requires_the_cognito_authorizer(synth: Synth) -> None:
    methods = synth.resources("AWS::ApiGateway::Method")
    assert len(methods) == len(ROUTES)
    authorizers = synth.resources("AWS::ApiGateway::Authorizer")
    assert [a["Properties"]["Type"] for a in authorizers.values()] == ["COGNITO_USER_POOLS"]
    (authorizer_id,) = authorizers
    for method in methods.values():
        assert method["Properties"]["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert method["Properties"]["AuthorizerId"] == {"Ref": authorizer_id}
    stage = next(iter(synth.resources("AWS::ApiGateway::Stage").values()))["Properties"]
    settings = stage["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] > 0 and settings["ThrottlingBurstLimit"] > 0
    assert stage["TracingEnabled"] is True and "AccessLogSetting" in stage


def test_functions_share_one_definition(synth: Synth) -> None:
    functions = synth.resources("AWS::Lambda::Function")
    ours = {
        k: f["Properties"]
        for k, f in functions.items()
        if f["Properties"].get("Handler", "").startswith("functions.")
    }
    assert sorted(p["Handler"] for p in ours.values()) == sorted(f.handler for f in FUNCTIONS)
    for props in ours.values():
        assert props["Runtime"] == "python3.14"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert len(props["Layers"]) == 1 and "VpcConfig" in props and "KmsKeyArn" in props


def _statements(synth: Synth) -> list[dict[str, Any]]:
    out = []
    for policy in synth.resources("AWS::IAM::Policy").values():
        out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_no_function_may_delete_or_overwrite_an_original(synth: Synth) -> None:
    """On the originals bucket: no delete for anyone; PutObject on the whole bucket only for
    the API role (it signs the browser's POSTs to new keys); the roles that write DICOM
    received over the network (the DICOM service's, the PACS retrieve consumer's) only for
    new originals (the If-None-Match condition); every other writer only under quarantine/."""
    originals = synth.logical_id(synth.stack.storage.buckets["originals_bucket"])
    api_role = {"Ref": synth.logical_id(synth.stack.functions["upload_url"].role)}  # type: ignore[arg-type]
    dicom_roles = [
        {"Ref": synth.logical_id(synth.stack.dicom.service.task_definition.task_role)},
        {"Ref": synth.logical_id(synth.stack.functions["pacs_retrieve"].role)},  # type: ignore[arg-type]
    ]
    checked = set()
    for policy in synth.resources("AWS::IAM::Policy").values():
        roles = policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            on_originals = [r for r in _list(statement["Resource"]) if originals in str(r)]
            if not on_originals:
                continue
            actions = _list(statement["Action"])
            assert not any(a.startswith("s3:Delete") or a in ("s3:*", "s3:PutObject*") for a in actions)
            if "s3:PutObject" not in actions or api_role in roles:
                continue
            if any(role in roles for role in dicom_roles):
                assert statement["Condition"] == {"Null": {"s3:if-none-match": "false"}}, statement
                assert all("/clinic/*/original/*" in str(r) for r in on_originals), statement
                checked.add(next(r["Ref"] for r in dicom_roles if r in roles))
            else:
                assert all("quarantine/" in str(r) for r in on_originals), statement
                checked.add("quarantine")
    # Every kind of writer was seen and held to its rule.
    assert checked == {"quarantine", *(r["Ref"] for r in dicom_roles)}


def test_the_batch_tracker_runs_the_shared_definition(synth: Synth) -> None:
    import json as _json

    from orca_imaging.resources import DEFINITIONS, STATE_MACHINES

    (spec,) = STATE_MACHINES
    tracker = synth.stack.trackers[spec.settings_field].state_machine
    props = synth.json["Resources"][synth.logical_id(tracker)]["Properties"]
    # CDK uploads the very file as an asset; ${...} are filled from DefinitionSubstitutions.
    assert set(props["DefinitionSubstitutions"]) == set(spec.substitutions)
    asset_hash = props["DefinitionS3Location"]["Key"].removesuffix(".json")
    shipped = (synth.outdir / f"asset.{asset_hash}.json").read_text()
    shared = (DEFINITIONS / spec.definition_file).read_text()
    assert _json.loads(shipped) == _json.loads(shared)
    batches = synth.logical_id(synth.stack.tables.tables["batches_table"])
    assert props["DefinitionSubstitutions"]["BatchesTable"] == {"Ref": batches}
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert props["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
    # Native integrations only: no Lambda task anywhere in the definition.
    assert "lambda:invoke" not in shared and "arn:aws:lambda" not in shared


def test_a_tracker_that_fails_or_times_out_pages_the_operators(synth: Synth) -> None:
    """Its batch would stay PROCESSING for good. A cancel (an aborted execution) is no fault."""
    for tracker in synth.stack.trackers.values():
        alarm = synth.json["Resources"][synth.logical_id(tracker.unfinished_alarm)]["Properties"]
        watched = {
            query["MetricStat"]["Metric"]["MetricName"]: query["MetricStat"]
            for query in alarm["Metrics"]
            if "MetricStat" in query
        }
        assert set(watched) == {"ExecutionsFailed", "ExecutionsTimedOut"}
        (expression,) = [query["Expression"] for query in alarm["Metrics"] if "Expression" in query]
        assert expression == "FILL(failed, 0) + FILL(timedOut, 0)"  # either alone counts
        machine = {"Ref": synth.logical_id(tracker.state_machine)}
        for stat in watched.values():
            assert stat["Metric"]["Namespace"] == "AWS/States" and stat["Stat"] == "Sum"
            assert stat["Metric"]["Dimensions"] == [{"Name": "StateMachineArn", "Value": machine}]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert alarm["AlarmActions"] == [{"Ref": synth.logical_id(synth.stack.alarms)}]


def test_the_tracker_role_may_only_read_and_update_its_tables(synth: Synth) -> None:
    tracker = synth.stack.trackers["batch_state_machine_arn"].state_machine
    role_id = synth.logical_id(tracker.role)  # type: ignore[arg-type]
    statements = [
        s
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    dynamo = [s for s in statements if any(str(a).startswith("dynamodb:") for a in _list(s["Action"]))]
    assert {a for s in dynamo for a in _list(s["Action"])} == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert any("events:PutEvents" in _list(s["Action"]) for s in statements)


def test_the_api_function_may_start_and_stop_batch_executions(synth: Synth) -> None:
    api_role = synth.logical_id(synth.stack.functions["upload_url"].role)  # type: ignore[arg-type]
    actions = {
        a
        for p in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": api_role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        for a in _list(s["Action"])
    }
    assert {"states:StartExecution", "states:StopExecution"} <= actions
    env = next(
        f["Properties"]["Environment"]["Variables"]
        for f in synth.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "functions.upload_url.handler.lambda_handler"
    )
    assert "ORCA_BATCH_STATE_MACHINE_ARN" in env and "ORCA_PATIENTS_TABLE" in env


def test_a_schedule_failing_run_after_run_pages_the_operators(synth: Synth) -> None:
    """Nothing retries a scheduled run but the next one: its function's errors, or an item
    of its work that keeps failing (a CBCT volume that never builds), for 15 minutes."""
    for schedule in SCHEDULES:
        alarm = synth.json["Resources"][synth.logical_id(synth.stack.schedule_alarms[schedule.construct_id])][
            "Properties"
        ]
        stats = [query["MetricStat"] for query in alarm["Metrics"] if "MetricStat" in query]
        function_id = synth.logical_id(synth.stack.functions[schedule.function])
        assert {(s["Metric"]["Namespace"], s["Metric"]["MetricName"]) for s in stats} == {
            ("AWS/Lambda", "Errors"),
            (METRICS_NAMESPACE, schedule.error_metric),
        }
        errors = next(s for s in stats if s["Metric"]["MetricName"] == "Errors")
        assert errors["Metric"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
        (expression,) = [query["Expression"] for query in alarm["Metrics"] if "Expression" in query]
        assert expression == "FILL(invocations, 0) + FILL(items, 0)"
        assert (alarm["EvaluationPeriods"], alarm["Threshold"]) == (3, 0)
        assert alarm["AlarmActions"] == [{"Ref": synth.logical_id(synth.stack.alarms)}]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_each_schedule_invokes_its_function_on_its_rate(synth: Synth) -> None:
    rules = synth.resources("AWS::Events::Rule")
    for schedule in SCHEDULES:
        (rule,) = [r for k, r in rules.items() if k.startswith(schedule.construct_id)]
        assert (
            rule["Properties"]["ScheduleExpression"]
            == f"rate({schedule.rate_seconds // 60} minute{'s' if schedule.rate_seconds > 60 else ''})"
        )
        (target,) = rule["Properties"]["Targets"]
        function_id = target["Arn"]["Fn::GetAtt"][0]
        assert (
            synth.resources("AWS::Lambda::Function")[function_id]["Properties"]["Handler"]
            == function(schedule.function).handler
        )
