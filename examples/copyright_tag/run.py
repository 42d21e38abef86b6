"""The horse class that fired on a copyright tag: a class-specific mark in a corner.

The watermark model reads the corner tag (accuracy ~100%, chance with the tag shuffled). The gate fails it
on corner heat and on object heat; its overlays and the heat atlas point at the corner. The clean model,
audited on the same tagged images, ignores the tag and passes.

Run: python examples/copyright_tag/run.py [--tracking-uri sqlite:///mlflow.db]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _story import audit_story, parse_args  # noqa: E402


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    workdir = Path(args.workdir or Path(__file__).parent / "work")
    _, tagged = audit_story("watermark", "watermark", "watermark", workdir, args.n_heldout, args.tracking_uri, "copyright")
    _, clean = audit_story("clean", None, "watermark", workdir, args.n_heldout, args.tracking_uri, "copyright-clean")
    corner_failed = any(c["check_id"] == "corner-heat" for c in tagged.failed_checks)
    ok = tagged.status == "FAIL" and clean.status in ("PASS", "WARN")
    print(f"corner-heat check failed for the tagged model: {corner_failed}")
    print("story holds: the tag model FAILS, the clean model PASSES" if ok else "unexpected verdicts")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
