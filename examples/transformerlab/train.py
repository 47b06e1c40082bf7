"""A training script in the style of Transformer Lab's gallery `sample-task`.

It knows nothing of skysweep: it reads its parameters from the `lab` SDK and reports
through it. The "training" is a stand-in curve so the example runs in a second on a
laptop: the loss is lowest for a learning rate near 3e-5.
"""

import math
import os

from lab import lab


def main() -> None:
    lab.init()
    config = lab.get_config()
    lr = float(config["learning_rate"])
    epochs = int(config["num_train_epochs"])
    lab.log(f"training {config['model_name']} on {config['dataset']} with lr={lr}")
    lab.log(f"MODEL_NAME in the environment: {os.environ.get('MODEL_NAME')}")
    distance = abs(math.log10(lr) - math.log10(3e-5))
    loss = 2.0
    for epoch in range(1, epochs + 1):
        loss = 0.3 + distance + 1.7 / (epoch + 1)
        lab.update_progress(
            int(100 * epoch / epochs), metrics={"train/loss": loss}, step=epoch
        )
        print(f"epoch {epoch}: train/loss {loss:.4f}")
    lab.finish(
        message="training done", score={"eval/loss": round(loss + 0.05, 6), "epochs": epochs}
    )


if __name__ == "__main__":
    main()
