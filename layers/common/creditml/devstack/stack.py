"""The whole local stack: embedded AWS + resources + seeded demo data + the HTTP gateway."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from creditml.auth.roles import Role
from creditml.billing.entries import EntryKind
from creditml.billing.ledger import request_hash
from creditml.composition import forget_components
from creditml.composition.auth import auth_service
from creditml.composition.core import ledger
from creditml.devstack.aws import (
    REGION,
    EmbeddedAws,
    function_environment,
    provision,
    pseudo_parameters,
)
from creditml.devstack.cors import local_origins
from creditml.devstack.events import DEMO_MODEL_NAME
from creditml.devstack.gateway import MAX_CONCURRENT_INVOCATIONS, Gateway
from creditml.devstack.s3events import S3EventPump, subscribe
from creditml.devstack.streams import StreamEventPump
from creditml.devstack.streams import subscribe as subscribe_streams
from creditml.devstack.template import Resolver, Template
from creditml.errors import EmailTaken
from creditml.settings import get_settings
from creditml.storage.clients import size_pools
from creditml.storage.users import UserRepository

STACK_NAME = "creditml-local"
DEFAULT_ADMIN_EMAIL = "admin@creditml.local"
DEFAULT_DEMO_EMAIL = "demo@creditml.local"
DEMO_CREDITS = 1_000
DEMO_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# Threads of this process that may call AWS at once: every gateway slot, the S3 event pump,
# the stream event pump, and the main thread (seeding the demo model while the pump
# registers it).
AWS_CALLER_THREADS = MAX_CONCURRENT_INVOCATIONS + 3
# How long stop() waits, in all, for event pumps in the middle of a delivery: past it they
# are left to die with the process (daemon threads), so a stop takes seconds, not minutes.
STOP_SECONDS = 1.5


@dataclass(frozen=True)
class DemoAccount:
    email: str
    password: str
    role: str
    user_id: str


@dataclass(frozen=True)
class StackState:
    """What a running stack tells other local tools (no secrets): see state_path()."""

    api_url: str
    aws_endpoint: str
    environment: dict[str, str]
    demo_user_email: str
    admin_email: str
    pid: int


def state_path(root: Path) -> Path:
    return root / ".creditml" / "dev-stack.json"


class StackAlreadyRunning(RuntimeError):
    """Another local stack owns this folder's state file."""


class StateClaim:
    """The right to write (and remove) a folder's state file: an exclusive `flock` on
    `.creditml/dev-stack.lock`, held for as long as the stack runs. The kernel drops it when
    the process ends, however it ends (a `kill -9` included), so a stale claim cannot
    outlive its stack, and a second stack in the same folder can never overwrite or delete
    the state file of the first (it would point `creditml invoke`, `ledger verify` and the
    tests at the wrong stack)."""

    def __init__(self, root: Path) -> None:
        path = state_path(root).with_suffix(".lock")
        path.parent.mkdir(exist_ok=True)
        self._file = path.open("a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            running = read_state(root)
            where = f" (pid {running.pid}, API {running.api_url})" if running else ""
            raise StackAlreadyRunning(
                f"a local stack is already running in {root}{where}: stop it first, or "
                "start this one from a copy of the project"
            ) from None

    def release(self) -> None:
        self._file.close()  # closing the last descriptor drops the lock


def aws_environment(endpoint: str) -> dict[str, str]:
    """Variables that point boto3/botocore at the embedded AWS (credentials are dummies)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


def operator_settings(template: Template, environ: Mapping[str, str]) -> dict[str, str]:
    """The function variables bound to a template parameter (`!Ref RateLimitPerMinute`, ...)
    that the operator set in their own environment: the local stack keeps those values, as
    a deploy's parameter overrides would (`RATE_LIMIT_PER_MINUTE=5 creditml dev`)."""
    names = {
        name
        for spec in template.functions.values()
        for name, value in spec.environment.items()
        if isinstance(value, dict) and value.get("Ref") in template.parameters
    }
    return {name: environ[name] for name in sorted(names) if name in environ}


def apply_environment(environment: dict[str, str]) -> None:
    """Make this process look like a function container with `environment`."""
    os.environ.update(environment)
    forget_components()


def seed_account(email: str, password: str, role: Role) -> DemoAccount:
    """Register a demo account (idempotent per email) and give it `role`."""
    service = auth_service()
    users = UserRepository(get_settings().users_table)
    try:
        user = service.register(email, password)
    except EmailTaken:
        found = users.find_credentials(email)
        assert found is not None
        user = found[0]
    if role is not Role.USER:
        user = users.set_role(user.id, role)
    return DemoAccount(email=email, password=password, role=str(role), user_id=user.id)


def seed_credits(admin: DemoAccount, user: DemoAccount, amount: int) -> None:
    """Grant the demo user credits once (a fixed Idempotency-Key makes reseeding a no-op)."""
    request = {"amount": amount, "user_id": user.user_id, "note": "demo credits"}
    ledger().credit(
        user.user_id,
        amount,
        EntryKind.GRANT,
        actor_id=admin.user_id,
        idempotency_key="seed-demo-credits",
        request=request_hash("top_up", request),
        details={"note": "demo credits"},
    )


def seed_demo_model(admin: DemoAccount, timeout: float = 60) -> str:
    """Register an iris classifier through the real path: create the model, upload the file
    to the uploads bucket, and let the S3 event reach register_model. Returns its id."""
    import io

    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from creditml.auth.tokens import AccessClaims
    from creditml.composition.models import model_service
    from creditml.models.service import upload_key
    from creditml.storage.model_parts import Uploads

    iris = load_iris()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(iris.data, iris.target)
    # Fitted on a plain array (no pandas here); record the names clients may use. A pipeline
    # reports its first step's names.
    model.steps[0][1].feature_names_in_ = np.array(DEMO_FEATURES, dtype=object)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    caller = AccessClaims(admin.user_id, Role.ADMIN, 0)
    ticket = model_service().create(
        caller,
        DEMO_MODEL_NAME,
        "Iris species from sepal and petal sizes (scaled logistic regression)",
        1,
    )
    Uploads(get_settings().uploads_bucket).put(
        upload_key(ticket.model.id, 1), buffer.getvalue(), ticket.fields
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if model_service().show(caller, ticket.model.id).serving_version == 1:
            return ticket.model.id
        time.sleep(0.05)
    raise RuntimeError("the demo model did not register in time")


class LocalStack:
    """Start with `start()`, stop with `stop()`; `accounts` lists the seeded demo logins."""

    def __init__(self, template: Template, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.template = template
        self._host, self._port = host, port
        self.aws: EmbeddedAws | None = None
        self.gateway: Gateway | None = None
        self.accounts: list[DemoAccount] = []
        self.events: S3EventPump | None = None
        self.streams: StreamEventPump | None = None
        self.demo_model_id: str | None = None
        self._gateway_thread: threading.Thread | None = None
        self._claim: StateClaim | None = None

    def start(
        self,
        admin_email: str | None = None,
        admin_password: str | None = None,
        seed_model: bool = True,
        publish_state: bool = True,
    ) -> None:
        """Start everything. `publish_state`: write the folder's state file for other local
        tools (`creditml dev`); a private stack (`creditml invoke`'s own) leaves it alone.
        StackAlreadyRunning when another stack publishes there."""
        if publish_state:
            self._claim = StateClaim(self.template.root)
        overrides = operator_settings(self.template, os.environ)
        # The embedded AWS only ever listens on loopback, whatever host the API binds.
        self.aws = EmbeddedAws().start()
        environment = aws_environment(self.aws.endpoint)
        apply_environment(environment)
        size_pools(AWS_CALLER_THREADS)
        # Bound (not yet serving) first: the buckets' CORS rules name the page's origin, the
        # gateway's, whose port may be chosen only now (--port 0).
        self.gateway = Gateway(self.template, self._host, self._port)
        host, port = self.gateway.server_address[:2]
        provisioned = provision(
            self.template, STACK_NAME, api_origins=local_origins(str(host), int(port))
        )
        environment |= function_environment(self.template, provisioned, STACK_NAME)
        environment |= overrides
        apply_environment(environment)
        self.environment = environment
        resolver = Resolver(
            self.template,
            provisioned.physical,
            provisioned.attributes,
            pseudo_parameters(STACK_NAME),
        )
        self.aws.lambdas.serve(self.template.functions, resolver.resolve)
        # Stream subscriptions start before any data, as a deploy's event source mappings do.
        self.streams = StreamEventPump(subscribe_streams(self.template, provisioned, STACK_NAME))
        self.streams.start()
        self.accounts = [
            seed_account(
                admin_email or DEFAULT_ADMIN_EMAIL,
                admin_password or secrets.token_urlsafe(12),
                Role.ADMIN,
            ),
            seed_account(DEFAULT_DEMO_EMAIL, secrets.token_urlsafe(12), Role.USER),
        ]
        seed_credits(self.accounts[0], self.accounts[1], DEMO_CREDITS)
        self.events = S3EventPump(subscribe(self.template, provisioned.physical, STACK_NAME))
        self.events.start()
        if seed_model:
            self.demo_model_id = seed_demo_model(self.accounts[0])
        self._gateway_thread = threading.Thread(
            target=self.gateway.serve_forever, name="gateway", daemon=True
        )
        self._gateway_thread.start()
        if self._claim is not None:
            self._write_state()

    @property
    def api_url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    def stop(self) -> None:
        """Stop taking requests, then stop the event pumps and the embedded AWS. Safe on a
        stack whose start() was interrupted part-way: what never started is skipped."""
        if self.gateway is not None:
            if self._gateway_thread is not None:  # shutdown() waits for a serve_forever()
                self.gateway.shutdown()
            self.gateway.server_close()
        deadline = time.monotonic() + STOP_SECONDS
        for pump in (self.events, self.streams):
            if pump is not None:
                pump.stop(timeout=max(0.0, deadline - time.monotonic()))
        if self.aws is not None:
            self.aws.stop()
        if self._claim is not None:  # only the stack that wrote it removes it
            state_path(self.template.root).unlink(missing_ok=True)
            self._claim.release()
            self._claim = None

    def _write_state(self) -> None:
        assert self.aws is not None
        state = StackState(
            api_url=self.api_url,
            aws_endpoint=self.aws.endpoint,
            environment=self.environment,
            demo_user_email=self.accounts[1].email,
            admin_email=self.accounts[0].email,
            pid=os.getpid(),
        )
        path = state_path(self.template.root)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(asdict(state), indent=2), encoding="utf-8")


def read_state(root: Path) -> StackState | None:
    """The running local stack's state, or None when none is running."""
    path = state_path(root)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        state = StackState(**data)
        os.kill(state.pid, 0)
    except (OSError, ValueError, TypeError):
        return None
    return state
