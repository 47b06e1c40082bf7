"""A small, real training run: logistic regression by mini-batch SGD on generated data.

Pure Python, no downloads, a few seconds on one core. The eval loss really depends on
``learning_rate`` (too small underfits in the fixed budget, too large diverges) and on
``batch_size`` (smaller batches take more steps in the same number of epochs).
Reads its parameters from the environment, as every skysweep job does, and reports through
``$SKYSWEEP_OUTPUT_DIR/metrics.json`` and ``history.jsonl``.
"""

import json
import math
import os
import random
from pathlib import Path

FEATURES = 8
TRAIN, EVAL = 1500, 500


def make_data(seed: int) -> tuple[list[list[float]], list[int]]:
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) for _ in range(FEATURES)]
    xs, ys = [], []
    for _ in range(TRAIN + EVAL):
        x = [rng.gauss(0, 1) for _ in range(FEATURES)]
        logit = sum(w * v for w, v in zip(true_w, x)) + 0.3
        ys.append(1 if rng.random() < 1 / (1 + math.exp(-logit)) else 0)
        xs.append(x)
    return xs, ys


def loss_and_accuracy(w, b, xs, ys):
    total, correct = 0.0, 0
    for x, y in zip(xs, ys):
        z = max(-30.0, min(30.0, sum(wi * v for wi, v in zip(w, x)) + b))
        p = 1 / (1 + math.exp(-z))
        total -= math.log(max(p, 1e-12)) if y else math.log(max(1 - p, 1e-12))
        correct += (p >= 0.5) == bool(y)
    return total / len(xs), correct / len(xs)


def main() -> None:
    lr = float(os.environ.get("learning_rate", "0.1"))
    batch_size = int(float(os.environ.get("batch_size", "32")))
    epochs = int(float(os.environ.get("epochs", "3")))
    out = Path(os.environ.get("SKYSWEEP_OUTPUT_DIR", "."))
    out.mkdir(parents=True, exist_ok=True)

    xs, ys = make_data(seed=7)
    train_x, train_y, eval_x, eval_y = xs[:TRAIN], ys[:TRAIN], xs[TRAIN:], ys[TRAIN:]
    rng = random.Random(0)
    w, b = [0.0] * FEATURES, 0.0
    order = list(range(TRAIN))
    step = 0
    with (out / "history.jsonl").open("a") as history:
        for epoch in range(epochs):
            rng.shuffle(order)
            for start in range(0, TRAIN, batch_size):
                batch = order[start:start + batch_size]
                gw, gb = [0.0] * FEATURES, 0.0
                for i in batch:
                    z = max(-30.0, min(30.0, sum(wi * v for wi, v in zip(w, train_x[i])) + b))
                    err = 1 / (1 + math.exp(-z)) - train_y[i]
                    for k in range(FEATURES):
                        gw[k] += err * train_x[i][k]
                    gb += err
                w = [wi - lr * g / len(batch) for wi, g in zip(w, gw)]
                b -= lr * gb / len(batch)
                step += 1
            loss, acc = loss_and_accuracy(w, b, eval_x, eval_y)
            history.write(json.dumps({"step": step, "epoch": epoch + 1, "eval/loss": loss}) + "\n")
            print(f"epoch {epoch + 1}: eval/loss={loss:.4f} eval/accuracy={acc:.3f}", flush=True)

    loss, acc = loss_and_accuracy(w, b, eval_x, eval_y)
    (out / "metrics.json").write_text(json.dumps({"eval/loss": loss, "eval/accuracy": acc}))


if __name__ == "__main__":
    main()
