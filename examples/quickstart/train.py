"""A small, real training run: logistic regression by mini-batch SGD on generated data.

Pure Python, no downloads, well under a second on one core. The data are fixed (seed 7):
300 training examples of 24 features, of which 6 carry the signal and 18 are noise, and
1,000 held-out examples for the eval loss; few examples for many features, as real tabular
data often has, so what three epochs of SGD make of them depends on how they are trained and
the same parameters always give the same loss. The eval loss really depends on
``learning_rate`` (too small underfits in the fixed budget, too large overshoots) and on
``batch_size`` (smaller batches take more steps in the same number of epochs), and, when a
search sets them, on ``momentum`` (heavy-ball SGD: a moderate momentum with a matching
learning rate beats plain SGD; near 1 it overshoots) and ``weight_decay`` (L2; harmless when
small, underfits above about 1e-2). Both default to 0, the plain SGD of task.yaml's grid.
Reads its parameters from the environment, as every skysweep job does, and reports the eval
loss of every epoch with ``skysweep.log`` (``$SKYSWEEP_OUTPUT_DIR/history.jsonl``, what early
stopping judges a running trial by) and the final metrics with ``skysweep.finish``
(``metrics.json``, what the trials are ranked by).
"""

import json
import math
import os
import random

try:
    from skysweep import finish, log
except ImportError:
    # Where skysweep is not installed (a cloud VM whose `setup` does not pip install it), write
    # the same two files by hand, as any language can (DESIGN.md section 3); like the helper,
    # write nothing outside a skysweep job.
    def log(step, metrics):
        if os.environ.get("SKYSWEEP_OUTPUT_DIR"):
            path = os.path.join(os.environ["SKYSWEEP_OUTPUT_DIR"], "history.jsonl")
            with open(path, "a") as history:
                history.write(json.dumps({"step": step, **metrics}) + "\n")

    def finish(metrics):
        if os.environ.get("SKYSWEEP_OUTPUT_DIR"):
            path = os.path.join(os.environ["SKYSWEEP_OUTPUT_DIR"], "metrics.json")
            with open(path + ".tmp", "w") as f:
                json.dump(metrics, f)
            os.replace(path + ".tmp", path)

FEATURES, INFORMATIVE = 24, 6
TRAIN, EVAL = 300, 1000


def make_data(seed: int) -> tuple[list[list[float]], list[int]]:
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) if k < INFORMATIVE else 0.0 for k in range(FEATURES)]
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


def train(lr, batch_size, epochs, momentum=0.0, weight_decay=0.0):
    """Yield (epoch, eval loss, eval accuracy, updates) after each epoch."""
    xs, ys = make_data(seed=7)
    train_x, train_y, eval_x, eval_y = xs[:TRAIN], ys[:TRAIN], xs[TRAIN:], ys[TRAIN:]
    rng = random.Random(0)
    w, b = [0.0] * FEATURES, 0.0
    vw, vb = [0.0] * FEATURES, 0.0
    order = list(range(TRAIN))
    updates = 0
    for epoch in range(1, epochs + 1):
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
            if not (momentum or weight_decay):
                w = [wi - lr * g / len(batch) for wi, g in zip(w, gw)]
                b -= lr * gb / len(batch)
            else:
                gw = [g / len(batch) + weight_decay * wi for g, wi in zip(gw, w)]
                vw = [momentum * v + g for v, g in zip(vw, gw)]
                vb = momentum * vb + gb / len(batch)
                w = [wi - lr * v for wi, v in zip(w, vw)]
                b -= lr * vb
            updates += 1
        loss, acc = loss_and_accuracy(w, b, eval_x, eval_y)
        yield epoch, loss, acc, updates


def main() -> None:
    lr = float(os.environ.get("learning_rate", "0.1"))
    batch_size = int(float(os.environ.get("batch_size", "32")))
    epochs = int(float(os.environ.get("epochs", "3")))
    momentum = float(os.environ.get("momentum", "0"))
    weight_decay = float(os.environ.get("weight_decay", "0"))
    for epoch, loss, acc, updates in train(lr, batch_size, epochs, momentum, weight_decay):
        # The step is the epoch, not the update count: trials with different batch sizes
        # make different numbers of updates per epoch, and early stopping compares trials
        # at the same step.
        log(epoch, {"eval/loss": loss, "eval/accuracy": acc, "updates": updates})
        print(f"epoch {epoch}: eval/loss={loss:.4f} eval/accuracy={acc:.3f}", flush=True)

    finish({"eval/loss": loss, "eval/accuracy": acc})


if __name__ == "__main__":
    main()
