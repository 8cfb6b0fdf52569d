"""``mediagate adversarial run``: the command line of the robustness suites (see :mod:`adversarial.runner`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register ``adversarial run`` on the ``mediagate`` command's subparsers."""
    adv = sub.add_parser("adversarial", help="robustness suites against the gate's own scorers and policies")
    adv_sub = adv.add_subparsers(dest="adversarial_command", required=True)
    arun = adv_sub.add_parser(
        "run", help="run a profile's suites; exit 1 when a threshold is violated, 2 when the run is misconfigured",
        description="Image attacks (torchattacks) on the gate targets, the live purification against adaptive "
                    "attacks, the feature-squeezing detector, text evasion against the pre-policy and the "
                    "pipeline-poisoning checks. Writes report.json, junit.xml and report.html to --report.")
    arun.add_argument("--profile", required=True, help="ci (under 5 minutes on 2 CPU cores) or full")
    arun.add_argument("--report", default="adversarial-report", help="output directory (default ./adversarial-report)")
    arun.add_argument("--thresholds", help="thresholds file (default adversarial/thresholds.toml)")
    arun.add_argument("--policy-dir", help="policy bundle to attack (default MEDIAGATE_POLICY_DIR or the repo's)")
    arun.add_argument("--gateway", metavar="URL", help="attack the bundle a deployed gateway enforces: fetched from "
                      "URL/v1/policies/bundle with the key in MEDIAGATE_API_KEY (policy-admin or auditor)")
    arun.add_argument("--targets", help="comma-separated gate targets (nsfw, quality, brand, nsfw-onnx)")
    arun.add_argument("--attacks", help="comma-separated attacks of the profile (e.g. fgsm-8,pgd-8,square-8)")
    arun.add_argument("--suites", help="comma-separated suites (image, defense, detector, text, poisoning)")
    arun.add_argument("--clip-dir", help="CLIP model for the brand target (default: a tiny seeded one)")
    arun.add_argument("--seed", type=int, default=0)
    arun.set_defaults(func=cmd_adversarial_run)



def _fetch_bundle(url: str, target: Path) -> Path:
    """The active bundle of the gateway at ``url``, unpacked into ``target`` (a RunError names what failed)."""
    import os

    import requests

    from adversarial.runner import RunError
    from gateway.policy.bundle import load_bundle_archive

    key = os.environ.get("MEDIAGATE_API_KEY")
    if not key:
        raise RunError("--gateway needs a policy-admin or auditor key in MEDIAGATE_API_KEY")
    try:
        resp = requests.get(url.rstrip("/") + "/v1/policies/bundle", headers={"Authorization": f"Bearer {key}"},
                            timeout=30)
    except requests.RequestException as exc:
        raise RunError(f"could not fetch the bundle from {url}: {exc}") from exc
    if resp.status_code != 200:
        raise RunError(f"{url}/v1/policies/bundle answered {resp.status_code}: {resp.text[:200]}")
    bundle = load_bundle_archive(resp.content, origin=url)
    for rel, content in bundle.files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return target


def cmd_adversarial_run(args: argparse.Namespace) -> int:
    import tempfile

    from adversarial.reports import write_reports
    from adversarial.runner import SUITES, THRESHOLDS, RunError, run

    def names(value: str | None) -> list[str] | None:
        return [n.strip() for n in value.split(",") if n.strip()] if value else None

    from gateway.settings import Settings

    settings = Settings()
    policy_dir = Path(args.policy_dir) if args.policy_dir else settings.policy_dir
    try:
        with tempfile.TemporaryDirectory(prefix="mediagate-adversarial-") as scratch:
            if args.gateway:
                policy_dir = _fetch_bundle(args.gateway, Path(scratch) / "bundle")
            report = run(args.profile, thresholds_path=Path(args.thresholds) if args.thresholds else THRESHOLDS,
                         policy_dir=policy_dir, scratch=Path(scratch), targets=names(args.targets),
                         attacks=names(args.attacks), suites=names(args.suites) or SUITES,
                         clip_dir=Path(args.clip_dir) if args.clip_dir else None, seed=args.seed,
                         progress=lambda line: print(f"mediagate adversarial: {line}", file=sys.stderr))
    except RunError as exc:
        print(f"mediagate adversarial: {exc}", file=sys.stderr)
        return 2
    paths = write_reports(report, Path(args.report))
    for check in report.checks:
        mark = "ok  " if check.passed else "FAIL"
        value = "n/a" if check.value is None else f"{check.value:.4g}"
        bound = "" if check.limit is None else f" ({'<=' if check.kind == 'max' else '>='} {check.limit:g})"
        print(f"{mark} {check.suite:9} {check.target:10} {check.budget:40} {check.metric} {value}{bound}")
    print(f"{len(report.checks)} checks, {len(report.violations)} violated, {report.seconds:.1f} s; reports: "
          + ", ".join(str(p) for p in paths.values()))
    return 1 if report.violations else 0


