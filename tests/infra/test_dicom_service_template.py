"""The DICOM service in the template: Fargate in the isolated subnets, its spool on
encrypted EFS, an internal NLB that only the VPN's CIDR reaches, scaling and alarms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orca_imaging.resources import function as function_spec

if TYPE_CHECKING:
    from tests.infra.conftest import Synth

DICOM_PORT, TLS_PORT = 11112, 2762


def only(synth: Synth, kind: str) -> dict[str, Any]:
    (resource,) = synth.resources(kind).values()
    return dict(resource["Properties"])


def test_the_service_runs_on_fargate_in_isolated_subnets_without_a_public_address(synth: Synth) -> None:
    service = only(synth, "AWS::ECS::Service")
    assert service["LaunchType"] == "FARGATE" and service["DesiredCount"] == 2
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    isolated = {
        synth.stack.resolve(subnet.subnet_id)["Ref"] for subnet in synth.stack.network.vpc.isolated_subnets
    }
    assert {ref["Ref"] for ref in network["Subnets"]} == isolated
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }


def test_the_container_spools_to_encrypted_efs_and_gets_its_title_from_ssm(synth: Synth) -> None:
    task = only(synth, "AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    assert container["StopTimeout"] == 120 and container["ReadonlyRootFilesystem"] is True
    assert container["MountPoints"] == [
        {"ContainerPath": "/spool", "ReadOnly": False, "SourceVolume": "spool"},
        {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"},  # task storage, for TLS keys
    ]
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert env["ORCA_SPOOL_DIR"] == "/spool" and env["ORCA_DICOM_PORT"] == str(DICOM_PORT)
    assert task["Cpu"] == "2048" and env["ORCA_RECEIVERS"] == "2"  # a receiving process per vCPU
    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    tls = synth.logical_id(synth.stack.dicom.tls_secret)
    assert set(secrets) == {
        "ORCA_AE_TITLE",
        "ORCA_TLS_CERTIFICATE",
        "ORCA_TLS_PRIVATE_KEY",
        "ORCA_TLS_CLIENT_CA",
    }
    assert all(tls in str(secrets[name]) for name in secrets if name.startswith("ORCA_TLS_"))
    assert (
        container["HealthCheck"]["Command"][0] == "CMD"
        and "/health" in container["HealthCheck"]["Command"][-1]
    )
    volumes = {v["Name"]: v for v in task["Volumes"]}
    assert set(volumes) == {"spool", "tmp"} and "EFSVolumeConfiguration" not in volumes["tmp"]
    efs = volumes["spool"]["EFSVolumeConfiguration"]
    assert efs["TransitEncryption"] == "ENABLED" and efs["AuthorizationConfig"]["IAM"] == "ENABLED"
    file_system = only(synth, "AWS::EFS::FileSystem")
    assert file_system["Encrypted"] is True and file_system["KmsKeyId"]


def test_the_load_balancer_is_internal_and_only_the_vpn_reaches_the_dicom_and_tls_ports(synth: Synth) -> None:
    balancer = only(synth, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert balancer["Type"] == "network" and balancer["Scheme"] == "internal"
    listeners = synth.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    # Plain TCP on both: DICOM TLS ends in the task, which can then check a client certificate.
    assert sorted((r["Properties"]["Port"], r["Properties"]["Protocol"]) for r in listeners) == [
        (TLS_PORT, "TCP"),
        (DICOM_PORT, "TCP"),
    ]
    groups = synth.resources("AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert sorted(g["Properties"]["Port"] for g in groups) == [TLS_PORT, DICOM_PORT]
    for group in (g["Properties"] for g in groups):
        attributes = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}
        assert attributes["preserve_client_ip.enabled"] == "true"  # nodes' CIDRs see the device's address
        assert group["HealthCheckProtocol"] == "HTTP" and group["HealthCheckPath"] == "/health"

    cidr = {"Ref": synth.stack.resolve(synth.stack.dicom.client_cidr.logical_id)}
    lb_sg = synth.json["Resources"][synth.logical_id(synth.stack.dicom.load_balancer_sg)]["Properties"]
    ingress = [
        (r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in lb_sg["SecurityGroupIngress"]
    ]
    assert sorted(ingress, key=str) == sorted([(cidr, "tcp", p, p) for p in (DICOM_PORT, TLS_PORT)], key=str)
    for sg in synth.resources("AWS::EC2::SecurityGroup").values():
        for rule in sg["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0", rule
    for rule in synth.resources("AWS::EC2::SecurityGroupIngress").values():
        assert rule["Properties"].get("CidrIp") != "0.0.0.0/0", rule


def test_the_service_scales_on_cpu_and_its_alarms_page_the_operators(synth: Synth) -> None:
    (scaling,) = synth.resources("AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert scaling["Properties"]["MinCapacity"] == 2 and scaling["Properties"]["MaxCapacity"] == 6
    (policy,) = synth.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    target = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert (
        target["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    )
    topic = {"Ref": synth.logical_id(synth.stack.alarms)}
    alarms = {synth.logical_id(a): a for a in synth.stack.dicom.alarms.values()}
    for logical_id in alarms:
        alarm = synth.json["Resources"][logical_id]["Properties"]
        assert alarm["AlarmActions"] == [topic]
    backlog = synth.json["Resources"][synth.logical_id(synth.stack.dicom.alarms["SpoolBacklog"])][
        "Properties"
    ]
    assert backlog["MetricName"] == "DicomSpoolDepth" and backlog["Namespace"] == "Orca/Imaging"
    failed = synth.json["Resources"][synth.logical_id(synth.stack.dicom.alarms["StoresFailed"])]["Properties"]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in failed["Metrics"] if "MetricStat" in m}
    assert names == {"DicomStoresFailed", "DicomStoresRefused"}
    # Either alone in a period still counts (plain `failed + refused` has no value there).
    (expression,) = [m["Expression"] for m in failed["Metrics"] if "Expression" in m]
    assert expression == "FILL(failed, 0) + FILL(refused, 0)"
    damaged = synth.json["Resources"][synth.logical_id(synth.stack.dicom.alarms["SpoolDamaged"])][
        "Properties"
    ]
    assert (damaged["MetricName"], damaged["Threshold"]) == ("DicomSpoolDamaged", 0)
    # A device still refused, or still cut off mid-object, after three periods in a row:
    # not a title mistyped once, nor a link dropped once.
    for name, metric in (
        ("AssociationsRefused", "DicomAssociationsRefused"),
        ("StoresInterrupted", "DicomStoresInterrupted"),
    ):
        alarm = synth.json["Resources"][synth.logical_id(synth.stack.dicom.alarms[name])]["Properties"]
        assert (alarm["MetricName"], alarm["Threshold"], alarm["EvaluationPeriods"], alarm["Period"]) == (
            metric,
            0,
            3,
            300,
        )


def test_the_task_role_reads_tables_writes_only_audit_events_and_only_creates_originals(synth: Synth) -> None:
    role = {"Ref": synth.logical_id(synth.stack.dicom.service.task_definition.task_role)}
    statements = [
        statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if role in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]

    def actions_of(statement: dict[str, Any]) -> list[str]:
        action = statement["Action"]
        return [action] if isinstance(action, str) else action

    actions = {a for s in statements for a in actions_of(s)}
    reads = ("dynamodb:Query", "dynamodb:Scan", "dynamodb:GetItem")
    writes = [
        s for s in statements if any(a.startswith("dynamodb:") and a not in reads for a in actions_of(s))
    ]
    audit = synth.logical_id(synth.stack.tables.tables["audit_table"])
    # The one write: the audit event for a resent object that is already stored.
    assert [(w["Action"], audit in str(w["Resource"])) for w in writes] == [("dynamodb:PutItem", True)]
    assert {a for a in actions if a.startswith("dynamodb:")} - {*reads, "dynamodb:PutItem"} == set()
    assert {a for a in actions if a.startswith("s3:")} == {"s3:PutObject"}
    worklist = synth.logical_id(synth.stack.tables.tables["worklist_table"])
    (query,) = [s for s in statements if worklist in str(s["Resource"])]
    assert query["Action"] == "dynamodb:Query"


def test_the_functions_that_call_pacs_do_so_over_the_vpn_only_as_our_ae_title(synth: Synth) -> None:
    api = synth.json["Resources"][synth.logical_id(synth.stack.functions["upload_url"])]["Properties"]
    title = synth.stack.resolve(synth.stack.dicom.ae_title.string_value)
    assert api["Environment"]["Variables"]["ORCA_AE_TITLE"] == title
    shared, pacs_client = (
        synth.logical_id(group)
        for group in (
            synth.stack.network.functions_security_group,
            synth.stack.network.pacs_client_security_group,
        )
    )
    groups = api["VpcConfig"]["SecurityGroupIds"]
    assert {"Fn::GetAtt": [pacs_client, "GroupId"]} in groups
    cidr = {"Ref": synth.stack.resolve(synth.stack.dicom.client_cidr.logical_id)}

    def egress(group: str) -> list[tuple[bool, str, int | None]]:
        rules = synth.json["Resources"][group]["Properties"]["SecurityGroupEgress"]
        return sorted((r["CidrIp"] == cidr, r["IpProtocol"], r.get("FromPort")) for r in rules)

    # The API's own group reaches the VPN's range; the group every function shares does not.
    assert egress(pacs_client) == [(True, "tcp", 0)]
    assert egress(shared) == [(False, "tcp", 443)]
    # Only the functions that call a PACS (the API's queries, the retrieve consumer) are in it.
    for name, function in synth.stack.functions.items():
        properties = synth.json["Resources"][synth.logical_id(function)]["Properties"]
        in_group = {"Fn::GetAtt": [pacs_client, "GroupId"]} in properties["VpcConfig"]["SecurityGroupIds"]
        assert in_group == function_spec(name).calls_pacs
        if in_group:
            assert properties["Environment"]["Variables"]["ORCA_AE_TITLE"] == title
