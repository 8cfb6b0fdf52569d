"""The ``mediagate`` command line: serve, keys, models, audit and policy tools."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.settings import Settings


def _settings() -> Settings:
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=args.host or settings.host, port=args.port or settings.port,
                log_level="info")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from gateway.auth import create_key
    from gateway.db import create_schema, make_engine

    engine = make_engine(_settings().db_url)
    create_schema(engine)
    row, plaintext = create_key(engine, tenant=args.tenant, role=args.role)
    print(f"created key {row.id} for tenant {row.tenant!r}, role {row.role!r}; it is shown only once:",
          file=sys.stderr)
    print(plaintext)
    return 0


def cmd_models_init_demo(args: argparse.Namespace) -> int:
    from generators.demo import ensure_demo_pipeline
    from generators.registry import DEMO_MODEL

    settings = _settings()
    assert settings.models_dir is not None
    target = Path(args.dir) if args.dir else settings.models_dir / DEMO_MODEL
    path = ensure_demo_pipeline(target)
    print(path)
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from audit.sql_store import SqlAuditStore
    from gateway.db import make_engine

    engine = make_engine(_settings().db_url)
    with Session(engine) as session:
        report = SqlAuditStore().verify(session)
    if report.ok:
        print(f"audit log intact: {report.checked} entries verified")
        return 0
    print(f"audit log BROKEN at entry seq={report.first_bad_seq} id={report.first_bad_id}: {report.reason}",
          file=sys.stderr)
    return 1


BUNDLE_DIR_HELP = "bundle directory (default MEDIAGATE_POLICY_DIR or the repo's policies/)"


def _bundle_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else _settings().policy_dir


def _in_dir(directory: Path, problem: str) -> str:
    """Bundle-relative ``file:line:col`` -> a path the shell (and CI annotations) can open."""
    first = problem.split(":", 1)[0]
    return f"{directory / first}:{problem.split(':', 1)[1]}" if (directory / first).is_file() else problem


def cmd_policy_test(args: argparse.Namespace) -> int:
    from gateway.policy.base import PolicyEngineError
    from gateway.policy.bundle import BundleError, load_bundle
    from gateway.policy.testing import run_bundle_tests

    directory = _bundle_dir(args)
    try:
        run = run_bundle_tests(load_bundle(directory), coverage=args.coverage)
    except (BundleError, PolicyEngineError) as exc:
        print(_in_dir(directory, str(exc)), file=sys.stderr)
        return 2
    for r in run.results:
        status = "PASS" if r.passed else "FAIL"
        print(f"{r.path}: {status} ({r.duration_s * 1000:.1f}ms)")
        if not r.passed:
            print(f"  {directory / r.file}: {r.detail}")
            for line in r.prints:
                print(f"  print: {line}")
    print("-" * 80)
    if not run.results:
        print("error: no test_* rules found in any *_test.rego file", file=sys.stderr)
        return 1
    passed = len(run.results) - len(run.failed)
    print(f"{'PASS' if run.ok else 'FAIL'}: {passed}/{len(run.results)}")
    if args.coverage:
        print("Coverage (policy files, lines evaluated by the tests):")
        for file, share in run.coverage.items():
            print(f"  {directory / file}: {share * 100:.1f}%")
        total = sum(run.coverage.values()) / len(run.coverage) if run.coverage else 0.0
        print(f"  overall (mean of files): {total * 100:.1f}%")
    return 0 if run.ok else 1


def cmd_policy_check(args: argparse.Namespace) -> int:
    from gateway.policy.bundle import BundleError, load_bundle
    from gateway.policy.testing import check_bundle

    directory = _bundle_dir(args)
    try:
        problems = check_bundle(load_bundle(directory))
    except BundleError as exc:
        problems = [str(exc)]
    for problem in problems:
        print(_in_dir(directory, problem), file=sys.stderr)
    if problems:
        return 1
    print(f"{directory}: ok")
    return 0


def cmd_policy_doc(args: argparse.Namespace) -> int:
    from gateway.policy.bundle import BundleError, load_bundle
    from gateway.policy.docs import render_rules

    try:
        print(render_rules(load_bundle(_bundle_dir(args))), end="")
    except BundleError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mediagate", description="Governance-first quality and safety gateway for AI media generation. "
        "Configuration comes from MEDIAGATE_* environment variables (MEDIAGATE_HOME defaults to ./var).")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP gateway (creates the demo model on first start)")
    serve.add_argument("--host", help="bind address (default MEDIAGATE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default MEDIAGATE_PORT or 8080)")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; the key itself is the last line of stdout, shown once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=["app", "reviewer", "policy-admin", "auditor"])
    create.set_defaults(func=cmd_keys_create)

    models = sub.add_parser("models", help="models").add_subparsers(dest="models_command", required=True)
    init = models.add_parser("init-demo", help="build the tiny offline demo diffusion pipeline (seeded weights)")
    init.add_argument("--dir", help="target directory (default $MEDIAGATE_HOME/models/demo-tiny)")
    init.set_defaults(func=cmd_models_init_demo)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser("verify", help="check the hash chain; exit 1 naming the first bad entry")
    verify.set_defaults(func=cmd_audit_verify)

    policy = sub.add_parser("policy", help="policy bundle tools").add_subparsers(dest="policy_command", required=True)
    ptest = policy.add_parser(
        "test", help="run every test_* rule of the bundle like `opa test`; exit 1 on any failure or no tests")
    ptest.add_argument("dir", nargs="?", help=BUNDLE_DIR_HELP)
    ptest.add_argument("--coverage", action="store_true", help="also report the share of lines covered per file")
    ptest.set_defaults(func=cmd_policy_test)
    pcheck = policy.add_parser(
        "check", help="parse and compile the bundle; each problem as file:line:col: message; exit 1 on any")
    pcheck.add_argument("dir", nargs="?", help=BUNDLE_DIR_HELP)
    pcheck.set_defaults(func=cmd_policy_check)
    pdoc = policy.add_parser("doc", help="print the rule reference (markdown) from the bundle's METADATA annotations")
    pdoc.add_argument("dir", nargs="?", help=BUNDLE_DIR_HELP)
    pdoc.set_defaults(func=cmd_policy_doc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:  # noqa: BLE001 - a CLI prints one clear line, not a traceback
        from gateway.errors import GatewayError

        if isinstance(exc, GatewayError):
            print(f"error: {exc.detail}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
