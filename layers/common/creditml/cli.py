"""The `creditml` command: the local stack and developer tools.

creditml dev [--host 127.0.0.1] [--port 3000]    run the whole service locally
creditml invoke FUNCTION -e events/FILE.json     run one function's handler, like
                                                 `sam local invoke`, docker-free
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

TEMPLATE_NAME = "template.yaml"


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def find_template(explicit: str | None) -> Path:
    """template.yaml: the one given, else the nearest one above the working folder."""
    if explicit:
        return Path(explicit).resolve()
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / TEMPLATE_NAME
        if candidate.is_file():
            return candidate
    raise SystemExit(f"creditml: no {TEMPLATE_NAME} here or above; pass --template")


class _StopWhileStarting(Exception):
    """SIGINT or SIGTERM came while the local stack was still starting."""


def _dev(args: argparse.Namespace) -> int:
    import os

    from creditml.devstack.stack import LocalStack, StackAlreadyRunning
    from creditml.devstack.template import Template

    stack = LocalStack(Template(find_template(args.template)), args.host, args.port)
    stop = threading.Event()
    starting = True

    def on_signal(signum: int, _: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: the stop under way is quick
            return
        stop.set()
        if starting:  # abandon the start (seeding alone takes seconds) wherever it is
            raise _StopWhileStarting

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stack that does not
    # stop (or answer) is doing. The tests ask for it before they give up on a stack.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        _out("Starting the CreditML local stack...")
        stack.start(
            admin_email=os.environ.get("CREDITML_ADMIN_EMAIL"),
            admin_password=os.environ.get("CREDITML_ADMIN_PASSWORD"),
        )
        starting = False
    except StackAlreadyRunning as error:
        raise SystemExit(f"creditml dev: {error}") from None
    except _StopWhileStarting:
        _stop_and_exit(stack)
    _announce(stack)
    try:
        stop.wait()
    finally:
        _stop_and_exit(stack)
    return 0  # not reached


def _announce(stack: Any) -> None:
    url = stack.api_url
    _out(f"CreditML local stack is up (embedded AWS at {stack.environment['AWS_ENDPOINT_URL']})")
    _out(f"  Web UI      {url}/")
    _out(f"  API         {url}")
    _out(f"  Swagger UI  {url}/docs")
    _out(f"  OpenAPI     {url}/openapi.json")
    _out("Demo accounts (local only):")
    for account in stack.accounts:
        _out(f"  {account.role:<9} {account.email}  password: {account.password}")
    _out("Press Ctrl-C to stop.")


def _stop_and_exit(stack: Any) -> None:
    import os

    stack.stop()
    _out("CreditML local stack stopped.")
    # Everything is stopped and its state file removed. Tearing down the interpreter (the
    # embedded AWS's in-memory data, scikit-learn, every handler's modules) would take
    # seconds more, and many more after a long session, for nothing; threads still busy
    # with a request die with the process: leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _invoke(args: argparse.Namespace) -> int:
    from creditml.devstack.events import (
        PlaceholderError,
        StackValues,
        fill_event,
        placeholders_in,
    )
    from creditml.devstack.runtime import invoke
    from creditml.devstack.stack import LocalStack, apply_environment, read_state
    from creditml.devstack.template import Template

    template = Template(find_template(args.template))
    spec = _function(template, args.function)
    event_text = Path(args.event).read_text(encoding="utf-8")
    given = _given_values(args.set)
    response_out = sys.stdout
    # Like `sam local invoke`: logs and metrics (the function's, and a throwaway stack's)
    # go to stderr, so stdout holds only the response.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            # Checked before any stack work: an unknown placeholder fails fast.
            names = placeholders_in(event_text)
        except PlaceholderError as error:
            raise SystemExit(f"creditml: {args.event}: {error}") from None
        state = read_state(template.root)
        ephemeral: LocalStack | None = None
        demo_model_id = None
        if state is not None:
            apply_environment(state.environment)
            who = {"demo": state.demo_user_email, "admin": state.admin_email}
        else:
            # No stack is running: bring one up just for this invocation.
            ephemeral = LocalStack(template, port=0)
            ephemeral.start(publish_state=False)  # private: another tool must not find it
            who = {"admin": ephemeral.accounts[0].email, "demo": ephemeral.accounts[1].email}
            demo_model_id = ephemeral.demo_model_id
        try:
            values = StackValues(
                template,
                who.get(args.as_user, args.as_user),
                who["demo"],
                who["admin"],
                demo_model_id=demo_model_id,
                given=given,
            )
            event = fill_event(event_text, values.values_for(names))
            response = invoke(spec, event)
        except PlaceholderError as error:
            raise SystemExit(f"creditml: {args.event}: {error}") from None
        finally:
            if ephemeral is not None:
                ephemeral.stop()
    response_out.write(json.dumps(response, indent=2) + "\n")
    return 0


def _given_values(assignments: list[str]) -> dict[str, str]:
    """`--set NAME=VALUE` options as {NAME: VALUE}; NAME may keep its angle brackets."""
    from creditml.devstack.events import PLACEHOLDERS

    given: dict[str, str] = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        name = name.strip().strip("<>")
        if not separator:
            raise SystemExit(f"creditml: --set takes NAME=VALUE, not {assignment!r}")
        if name not in PLACEHOLDERS:
            raise SystemExit(f"creditml: --set {name}: no such placeholder")
        given[name] = value
    return given


def _function(template: Any, name: str) -> Any:
    # AuthFunction, auth, register_model (its folder's name) and registermodel all match.
    wanted = name.lower().replace("_", "").replace("-", "")
    for logical_id, spec in template.functions.items():
        if wanted in (logical_id.lower(), logical_id.lower().removesuffix("function")):
            return spec
    known = ", ".join(sorted(template.functions))
    raise SystemExit(f"creditml: no function {name!r} in the template (known: {known})")


def _point_at_stack(args: argparse.Namespace) -> None:
    """Use the deployed stack the environment names (LEDGER_TABLE, or --table), else the
    running local one."""
    import os

    from creditml.devstack.stack import apply_environment, read_state

    if getattr(args, "table", None):
        os.environ["LEDGER_TABLE"] = args.table
    elif "LEDGER_TABLE" not in os.environ:
        state = read_state(find_template(args.template).parent)
        if state is None:
            raise SystemExit(
                "creditml: set LEDGER_TABLE (or --table) for a deployed stack, "
                "or start the local stack with `creditml dev`"
            )
        apply_environment(state.environment)


def _ledger_verify(args: argparse.Namespace) -> int:
    from creditml.billing.verify import verify_ledger
    from creditml.settings import get_settings
    from creditml.storage.ledger import LedgerRepository

    _point_at_stack(args)
    settings = get_settings()
    repository = LedgerRepository(
        settings.ledger_table, settings.users_table, settings.models_table
    )
    report = verify_ledger(repository.scan_accounts())
    for mismatch in report.mismatches:
        _out(f"MISMATCH {mismatch}")
    verdict = "OK" if report.ok else f"{len(report.mismatches)} mismatch(es)"
    _out(
        f"ledger {settings.ledger_table}: {report.accounts} accounts, "
        f"{report.entries} entries: {verdict}"
    )
    return 0 if report.ok else 1


def _usage_backfill(args: argparse.Namespace) -> int:
    from creditml.composition.reports import backfill_usage
    from creditml.settings import get_settings

    _point_at_stack(args)
    read, counted = backfill_usage()
    _out(
        f"usage {get_settings().usage_table}: {read} debits in the ledger, "
        f"{counted} newly counted, {read - counted} counted before"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="creditml", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--template", help="path to template.yaml (default: nearest)")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the whole service locally (embedded AWS)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(run=_dev)

    inv = commands.add_parser("invoke", help="invoke one function's handler with an event")
    inv.add_argument("function", help="logical id (AuthFunction) or short name (auth)")
    inv.add_argument("-e", "--event", required=True, help="event JSON file, e.g. events/...")
    inv.add_argument(
        "--as",
        dest="as_user",
        default="demo",
        help="who <access-token> stands for: demo, admin, or an email",
    )
    inv.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fill placeholder <NAME> with VALUE instead of resolving it (repeatable)",
    )
    inv.set_defaults(run=_invoke)

    ledger = commands.add_parser("ledger", help="ledger tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser(
        "verify",
        help="recompute every balance from its ledger; exit 1 listing each mismatch",
        description="Against a deployed stack: set LEDGER_TABLE (and AWS credentials) or pass "
        "--table. Otherwise the running local stack is checked.",
    )
    verify.add_argument("--table", help="ledger table name (default: LEDGER_TABLE)")
    verify.set_defaults(run=_ledger_verify)

    usage = commands.add_parser("usage", help="usage report tools")
    usage_commands = usage.add_subparsers(dest="usage_command", required=True)
    backfill = usage_commands.add_parser(
        "backfill",
        help="count every ledger debit the usage counters do not hold yet (each once)",
        description="Run once after the first deploy of the ledger stream (debits written "
        "before it never reach the aggregator), or after the aggregator gave a batch up. "
        "Against a deployed stack: set LEDGER_TABLE, USAGE_TABLE, MODELS_TABLE (and AWS "
        "credentials). Otherwise the running local stack.",
    )
    backfill.set_defaults(run=_usage_backfill)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    # The embedded AWS would otherwise log every storage call.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
