"""Start and stop the whole local pipeline: moto, resources, API, pumps, schedules."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
import requests
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server

from orca_imaging import clients, repository
from orca_imaging.local.api_gateway import LocalApiGateway
from orca_imaging.local.jwt_issuer import LocalIssuer
from orca_imaging.local.lambda_runtime import FunctionHost
from orca_imaging.local.provision import LocalResources, provision
from orca_imaging.local.scheduler import Scheduler, scheduled_event
from orca_imaging.local.sqs_pump import SqsPump
from orca_imaging.resources import (
    QUEUES,
    SCHEDULES,
    SETTINGS_WITH_RESOURCES,
    STATE_MACHINES,
    function,
    settings_env,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

LOOPBACK = "127.0.0.1"
REGION = "us-east-1"
PROJECT_ROOT = Path(__file__).resolve().parents[5]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class LocalService(Protocol):
    """A long-running part the local stack starts after AWS and the API are up, such as the
    DICOM SCP on a loopback port. It reads the same environment the functions do."""

    def start(self, stack: LocalStack) -> None: ...

    def stop(self) -> None: ...

    def urls(self) -> list[tuple[str, str]]: ...


@dataclass
class LocalStackConfig:
    state_dir: Path
    api_port: int = 0  # 0: any free port
    moto_port: int = 0
    visibility_timeout_seconds: int = 30
    # Batches are checked this often locally (10 s in AWS) so progress shows promptly.
    batch_poll_seconds: int = 2
    # A CBCT series this quiet is complete (90 s in AWS); shorter here so a demo shows it.
    series_stable_seconds: int = 10
    # moto keeps one state per process: two stacks in one process need distinct names.
    resource_prefix: str = "orca-local"
    web_root: Path | None = field(default_factory=lambda: PROJECT_ROOT / "web")
    services: list[LocalService] = field(default_factory=list)


class LocalStack:
    """The embedded stack. Use as a context manager, or `start()` and `stop()`."""

    def __init__(self, config: LocalStackConfig) -> None:
        self.config = config
        self.issuer = LocalIssuer(config.state_dir)
        self.host = FunctionHost()
        self.resources: LocalResources | None = None
        self.pumps: list[SqsPump] = []
        self.scheduler: Scheduler | None = None
        self._moto: ThreadedMotoServer | None = None
        self._http: Any = None
        self._http_thread: threading.Thread | None = None
        self.moto_url = ""
        self.api_url = ""
        self._saved_env: dict[str, str] = {}

    # ------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        self._saved_env = dict(os.environ)
        # moto and the API server both log every request through werkzeug: keep the console for our logs.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_port = self.config.moto_port or free_port()
        self._moto = ThreadedMotoServer(ip_address=LOOPBACK, port=moto_port, verbose=False)
        self._moto.start()
        self.moto_url = f"http://{LOOPBACK}:{moto_port}"
        requests.post(
            f"{self.moto_url}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}},
            timeout=10,
        ).raise_for_status()
        self._configure_process_env()
        self.resources = provision(
            self.moto_url,
            REGION,
            prefix=self.config.resource_prefix,
            visibility_timeout_seconds=self.config.visibility_timeout_seconds,
        )
        self._configure_function_env(self.resources)

        gateway = LocalApiGateway(self.host, self.issuer, self.config.web_root)
        self._http = make_server(LOOPBACK, self.config.api_port, gateway, threaded=True)
        self.api_url = f"http://{LOOPBACK}:{self._http.server_port}"
        self._http_thread = threading.Thread(target=self._http.serve_forever, name="local-api", daemon=True)
        self._http_thread.start()

        sqs = self.sqs()
        for queue in QUEUES:
            pump = SqsPump(
                sqs=sqs,
                host=self.host,
                function=function(queue.consumer),
                queue_url=self.resources.queue_urls[queue.construct_id],
                queue_arn=self.resources.queue_arns[queue.construct_id],
                region=REGION,
                batch_size=queue.batch_size,
            )
            pump.start()
            self.pumps.append(pump)
        self.scheduler = Scheduler(self.host, SCHEDULES, REGION)
        self.scheduler.start()
        for service in self.config.services:
            service.start(self)
        return self

    def stop(self) -> None:
        for service in reversed(self.config.services):
            service.stop()
        self.stop_executions()
        if self.scheduler:
            self.scheduler.stop()
        for pump in self.pumps:
            pump.stop()
        if self._http:
            self._http.shutdown()
        if self._moto:
            self._moto.stop()
        self._restore_env()

    def stop_executions(self) -> None:
        """Stop the running state machines. A batch tracker polls until its batch ends: the
        stack stops them as it stops, and tests stop those their batches left behind."""
        if not self.resources:
            return
        sfn = self.client("stepfunctions")
        for machine in STATE_MACHINES:
            arn = self.resources.values.get(machine.settings_field)
            if not arn:
                continue
            running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]
            for execution in running:
                sfn.stop_execution(executionArn=execution["executionArn"], cause="local stack stopped")

    def _restore_env(self) -> None:
        """Give the process back the environment (and table bindings) it had before start."""
        os.environ.clear()
        os.environ.update(self._saved_env)
        clients.reset()
        from orca_imaging.errors import ConfigurationError
        from orca_imaging.settings import TableSettings, load

        try:
            repository.bind_tables(load(TableSettings))
        except ConfigurationError:
            pass  # nothing was bound before this stack

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ environment
    def _configure_process_env(self) -> None:
        """The in-process handlers read the same variables a deployed function gets."""
        os.environ.update(
            {
                "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "ORCA_ENDPOINT_URL": self.moto_url,
                # moto's state-machine interpreter calls AWS services on localhost:MOTO_PORT.
                "MOTO_PORT": self.moto_url.rsplit(":", 1)[1],
                "POWERTOOLS_SERVICE_NAME": "orca-imaging",
            }
        )

    def _configure_function_env(self, resources: LocalResources) -> None:
        for settings in SETTINGS_WITH_RESOURCES:
            os.environ.update(settings_env(settings, resources.values))
        os.environ["ORCA_BATCH_POLL_SECONDS"] = str(self.config.batch_poll_seconds)
        os.environ["ORCA_SERIES_STABLE_SECONDS"] = str(self.config.series_stable_seconds)
        clients.reset()
        from orca_imaging.settings import TableSettings, load

        repository.bind_tables(load(TableSettings))

    # ------------------------------------------------------------ helpers
    def run_schedule(self, construct_id: str) -> Any:
        """One tick of a schedule now, with the event EventBridge would send."""
        schedule = next(s for s in SCHEDULES if s.construct_id == construct_id)
        return self.host.invoke(function(schedule.function), scheduled_event(schedule, REGION))

    def client(self, service: Any) -> Any:
        return boto3.session.Session(region_name=REGION).client(service, endpoint_url=self.moto_url)

    def sqs(self) -> Any:
        return self.client("sqs")

    def token(self, *, clinic_id: str, roles: list[Any], user_id: str | None = None) -> str:
        return self.issuer.mint(clinic_id=clinic_id, roles=roles, user_id=user_id)

    def wait_until(self, predicate: Any, timeout: float = 30, interval: float = 0.2) -> Any:
        """Poll `predicate` until it returns something truthy; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(interval)

    def urls(self) -> Iterator[tuple[str, str]]:
        yield "API", f"{self.api_url}/api/imaging"
        yield "Web uploader", f"{self.api_url}/"
        yield "AWS endpoint (moto)", self.moto_url
        yield "Health", f"{self.api_url}/health"
        for service in self.config.services:
            yield from service.urls()
