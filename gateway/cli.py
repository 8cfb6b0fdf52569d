"""The ``mediagate`` command line: serve, keys, models, audit and policy tools."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.settings import Settings


def _settings() -> Settings:
    return Settings()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging
    from gateway.runtime import registry_specs
    from gateway.scoring import build_brands, scorer_names
    from generators.registry import RegistryError

    settings = _settings()
    try:
        registry_specs(settings)  # a bad registry file stops here, naming the entry, before anything starts
        scorer_names(settings)  # so does an unknown scorer, or a bad brand kit (naming the file and the field)
        build_brands(settings)
        if settings.score_purify:  # or a bad purification spec, naming the part
            from adversarial.defenses import Purifier

            Purifier.from_spec(settings.score_purify)
    except (RegistryError, ValueError) as exc:
        print(f"mediagate: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    # uvicorn's loggers propagate to that handler (log_config=None); its access log is replaced by mediagate.access
    uvicorn.run(create_app(settings), host=args.host or settings.host, port=args.port or settings.port,
                log_level=settings.log_level.lower(), log_config=None, access_log=False)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker rendering for gateways with MEDIAGATE_GENERATION_BACKEND=celery (one per GPU)."""
    import os

    from generators.remote import QUEUE, make_celery, register_task, worker_registry

    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = make_celery(settings.celery_broker_url, settings.celery_result_backend,
                      visibility_timeout_s=settings.celery_visibility_timeout_s,
                      restore_interval_s=settings.celery_restore_interval_s)
    register_task(app)
    worker_registry()  # load the models before taking any task: a bad registry stops here
    app.worker_main([
        "worker", "--pool", "threads", "--concurrency", str(args.concurrency or settings.batch_max_images),
        "--queues", QUEUE, "--loglevel", "INFO", "--hostname", args.hostname or f"mediagate-{os.getpid()}@%h",
        "--without-gossip", "--without-mingle",
    ])
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
    from quality.caption_model import build_tiny_blip
    from quality.clip_model import build_tiny_clip

    settings = _settings()
    assert settings.models_dir is not None
    assert settings.clip_model_dir is not None and settings.caption_model_dir is not None
    target = Path(args.dir) if args.dir else settings.models_dir / DEMO_MODEL
    print(ensure_demo_pipeline(target))
    for directory, build in ((settings.clip_model_dir, build_tiny_clip), (settings.caption_model_dir, build_tiny_blip)):
        if not directory.exists():  # never overwrite: the directory may hold real exported weights
            build(directory)
        print(directory)
    return 0


def _public_key(path: str | None) -> Any:
    from audit.keys import load_checkpoint_public_key

    if path:
        return load_checkpoint_public_key(Path(path))
    default = _settings().keys.checkpoint_public
    return load_checkpoint_public_key(default) if default.exists() else None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from audit.sql_store import SqlAuditStore
    from gateway.db import make_engine

    public = _public_key(args.public_key)
    notes = [Path(p).read_text() for p in args.checkpoint]
    if notes and public is None:
        print("error: --checkpoint needs the checkpoint public key (--public-key, or one in MEDIAGATE_SIGNING_DIR)",
              file=sys.stderr)
        return 2
    engine = make_engine(_settings().db_url)
    with Session(engine) as session:
        report = SqlAuditStore.verify(session, public_key=public, external=notes)
    if report.ok:
        signed = f", {report.checkpoints_verified} checkpoint signatures verified" if public else \
            " (no public key: checkpoint signatures not checked)"
        print(f"audit log intact: {report.checked} entries verified, root {report.root}{signed}")
        return 0
    where = f"entry seq={report.first_bad_seq} id={report.first_bad_id}: " if report.first_bad_seq else ""
    print(f"audit log BROKEN at {where}{report.reason}", file=sys.stderr)
    return 1


def cmd_audit_verify_proof(args: argparse.Namespace) -> int:
    """Offline: a proof document, signed checkpoint(s) and the public key; no database is opened."""
    import json

    from audit.checkpoint import CheckpointError
    from audit.keys import KeyMaterialError, load_checkpoint_public_key
    from audit.merkle import ProofError
    from audit.proofs import verify_consistency_document, verify_inclusion_document

    try:
        public = load_checkpoint_public_key(Path(args.public_key))
        doc = json.loads(Path(args.proof).read_text())
        notes = [Path(p).read_text() for p in args.checkpoint]
        if doc.get("kind") == "inclusion":
            if len(notes) != 1:
                raise ProofError("an inclusion proof is checked against exactly one --checkpoint")
            cp = verify_inclusion_document(doc, notes[0], public)
            print(f"OK: entry {doc['entry']['id']} (seq {doc['entry']['seq']}) is in the log of {cp.size} entries "
                  f"whose signed root is {cp.root.hex()}")
        elif doc.get("kind") == "consistency":
            if len(notes) != 2:
                raise ProofError("a consistency proof is checked against two --checkpoint files (older, newer)")
            old, new = verify_consistency_document(doc, notes[0], notes[1], public)
            print(f"OK: the log of {old.size} entries is a prefix of the log of {new.size} entries")
        else:
            raise ProofError("the document is neither an inclusion nor a consistency proof")
    except (OSError, ValueError, KeyMaterialError, CheckpointError, ProofError) as exc:
        print(f"NOT VERIFIED: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    from audit.checkpointer import Checkpointer
    from audit.keys import load_checkpoint_private_key
    from gateway.db import create_schema, make_engine

    settings = _settings()
    engine = make_engine(settings.db_url)
    create_schema(engine)
    checkpoint = Checkpointer(engine, load_checkpoint_private_key(settings.keys.checkpoint_key),
                              directory=settings.checkpoint_dir).checkpoint_now()
    if checkpoint is None:
        print("the audit log is empty", file=sys.stderr)
        return 1
    print(checkpoint.note, end="")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from audit.export import export_log
    from gateway.db import make_engine

    engine = make_engine(_settings().db_url)
    count = export_log(engine, Path(args.out), args.format)
    print(f"exported {count} entries to {args.out}", file=sys.stderr)
    return 0


def cmd_assets_expire(args: argparse.Namespace) -> int:
    """Run the retention job once, with the bundle that is active (the last activated one on record)."""
    from sqlmodel import Session, col, select

    from audit.group_commit import GroupCommitter
    from audit.sql_store import SqlAuditStore
    from gateway.assets import LocalAssetStore
    from gateway.db import create_schema, make_engine
    from gateway.models import PolicyEvent
    from gateway.policy.bundle import load_bundle, load_bundle_archive
    from gateway.policy.embedded import EmbeddedRegoEngine
    from gateway.retention import RetentionJob

    settings = _settings()
    engine = make_engine(settings.db_url)
    create_schema(engine)
    with Session(engine) as session:
        last = session.exec(select(PolicyEvent).where(PolicyEvent.event == "activated")
                            .order_by(col(PolicyEvent.created_at).desc()).limit(1)).first()
    bundle = load_bundle_archive(last.archive) if last and last.archive else load_bundle(settings.policy_dir)
    policy = EmbeddedRegoEngine(bundle, workers=1)
    committer = GroupCommitter(engine)
    assert settings.asset_dir is not None
    try:
        job = RetentionJob(db=engine, committer=committer, audit=SqlAuditStore(), policy=policy,
                           assets=LocalAssetStore(settings.asset_dir))
        results = job.run_once(dry_run=args.dry_run)
    finally:
        committer.close()
        policy.close()
    for r in results:
        verb = "would expire" if args.dry_run else "expired"
        print(f"{r.tenant}: {verb} {len(r.asset_ids)} assets older than {r.days:g} days"
              + (f" (audit entry {r.audit_entry}, {r.bytes_deleted} files deleted)" if r.audit_entry else ""))
    if not results:
        print("nothing to expire")
    return 0


def cmd_keys_init_signing(args: argparse.Namespace) -> int:
    from audit.keys import init_signing

    directory = Path(args.dir) if args.dir else _settings().keys.directory
    try:
        paths = init_signing(directory, force=args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths.files():
        print(path)
    return 0


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

    serve = sub.add_parser("serve", help="run the HTTP gateway (creates the demo model and development signing keys "
                           "on first start)")
    serve.add_argument("--host", help="bind address (default MEDIAGATE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default MEDIAGATE_PORT or 8080)")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="render on this machine for gateways with MEDIAGATE_GENERATION_BACKEND="
                                           "celery (Celery worker, Redis broker; one per GPU)")
    worker.add_argument("--concurrency", type=int,
                        help="tasks at once, which the micro-batcher combines (default MEDIAGATE_BATCH_MAX_IMAGES)")
    worker.add_argument("--hostname", help="Celery node name (default mediagate-<pid>@<host>)")
    worker.set_defaults(func=cmd_worker)

    keys = sub.add_parser("keys", help="API keys, and the signing keys for checkpoints and C2PA").add_subparsers(
        dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key; the key itself is the last line of stdout, shown once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", required=True, choices=["app", "reviewer", "policy-admin", "auditor"])
    create.set_defaults(func=cmd_keys_create)
    signing = keys.add_parser("init-signing", help="create the checkpoint key pair, a CA and a C2PA signing "
                              "certificate (development; production brings its own)")
    signing.add_argument("--dir", help="target directory (default MEDIAGATE_SIGNING_DIR or $MEDIAGATE_HOME/keys)")
    signing.add_argument("--force", action="store_true", help="replace existing key material")
    signing.set_defaults(func=cmd_keys_init_signing)

    assets = sub.add_parser("assets", help="asset store").add_subparsers(dest="assets_command", required=True)
    expire = assets.add_parser("expire", help="expire asset bytes per the tenants' retention policy (audited)")
    expire.add_argument("--dry-run", action="store_true", help="only list what would expire")
    expire.set_defaults(func=cmd_assets_expire)

    models = sub.add_parser("models", help="models").add_subparsers(dest="models_command", required=True)
    init = models.add_parser("init-demo", help="build the tiny offline demo models (seeded weights): the diffusion "
                                "pipeline, and the CLIP and caption models the scorers use where missing")
    init.add_argument("--dir", help="target directory (default $MEDIAGATE_HOME/models/demo-tiny)")
    init.set_defaults(func=cmd_models_init_demo)

    from adversarial.cli import add_parser as add_adversarial

    add_adversarial(sub)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser(
        "verify", help="check the hash chain, the Merkle tree and every checkpoint; exit 1 naming the first bad entry")
    verify.add_argument("--checkpoint", action="append", default=[], metavar="FILE",
                        help="a signed checkpoint kept outside the database (repeatable)")
    verify.add_argument("--public-key", help="checkpoint public key (default: the one in MEDIAGATE_SIGNING_DIR)")
    verify.set_defaults(func=cmd_audit_verify)
    vproof = audit.add_parser("verify-proof", help="check a proof offline against signed checkpoints; no database")
    vproof.add_argument("--proof", required=True, help="JSON from /v1/audit/entries/{id}/proof or /consistency")
    vproof.add_argument("--checkpoint", action="append", required=True, metavar="FILE",
                        help="signed checkpoint note(s): one for inclusion, older then newer for consistency")
    vproof.add_argument("--public-key", required=True, help="the gateway's checkpoint public key (PEM)")
    vproof.set_defaults(func=cmd_audit_verify_proof)
    cpoint = audit.add_parser("checkpoint", help="sign a checkpoint of the log now and print it")
    cpoint.set_defaults(func=cmd_audit_checkpoint)
    export = audit.add_parser("export", help="write every entry to a file")
    export.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    export.add_argument("--out", required=True, help="output file")
    export.set_defaults(func=cmd_audit_export)

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
