"""The tank detector that learned the weather, caught by the gate; the fixed data passes.

1. Data where every "tank" (here: one shape) photo is cloudy and every other photo sunny: a global
   brightness/colour cast travels with the label.
2. A model trained on it scores ~100% on a test set drawn the same way — and is right for the wrong reason:
   with the weather shuffled it falls to chance. The gate fails it: its heat spreads over the sky and
   background, the share on the object is no better than a uniform map's.
3. The fix: data where the weather no longer predicts the label. The retrained model learns the shapes and
   passes the gate on the same kind of cloudy/sunny held-out images.

Run: python examples/tanks_in_the_forest/run.py [--tracking-uri sqlite:///mlflow.db]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _story import audit_story, parse_args  # noqa: E402


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    workdir = Path(args.workdir or Path(__file__).parent / "work")
    _, shortcut = audit_story("weather", "weather", "weather", workdir, args.n_heldout, args.tracking_uri, "tanks")
    _, fixed = audit_story("clean", None, "weather", workdir, args.n_heldout, args.tracking_uri, "tanks-fixed")
    ok = shortcut.status == "FAIL" and fixed.status in ("PASS", "WARN")
    print("story holds: the weather model FAILS, the retrained model PASSES" if ok else "unexpected verdicts")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
