"""A training script with the gate built in: MLflow run + CamGateCallback.

The callback audits the model being trained on an annotated held-out set after every epoch (metrics logged
with step=epoch, so the MLflow UI draws lift and each check's value, corner heat included, over training) and once more at the end, where
its verdict decides whether this script exits 0. Run:

    python examples/train_with_gate.py [--epochs 8] [--tracking-uri sqlite:///mlflow.db]
    mlflow ui --backend-store-uri sqlite:///mlflow.db
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--n-heldout", type=int, default=200)
    parser.add_argument("--workdir", default=str(Path(__file__).parent / "work" / "train_with_gate"))
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()

    import mlflow

    from validator._tf import keras
    from validator.callback import CamGateCallback
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import make_arrays, write_dataset

    workdir = Path(args.workdir)
    heldout = workdir / "heldout"
    if not (heldout / "annotations.json").exists():
        write_dataset(heldout, args.n_heldout, seed=31)
    train = make_arrays(args.n_train, seed=32)

    keras.utils.set_random_seed(0)
    model = build_small_cnn(64, 2)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    gate = CamGateCallback(data=str(heldout / "annotations.json"), every_n_epochs=1, out=workdir / "report")

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment("camgate-train-with-gate")
    with mlflow.start_run(run_name="shapes-cnn") as run:
        model.fit(train.images.astype("float32"), train.labels, epochs=args.epochs, batch_size=32,
                  validation_split=0.1, verbose=2, callbacks=[gate])
    for entry in gate.history:
        print(f"epoch {entry['epoch']}: gate {entry['status']}, lift {entry['metrics'].get('lift_mean/overall', float('nan')):.2f}")
    print(f"final gate verdict: {gate.verdict.status} (MLflow run {run.info.run_id})")
    return gate.verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
