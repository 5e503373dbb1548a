from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import fit_autoencoder
from threat_ensemble.models.autoencoder import (
    ERROR_SCALE_FLOOR,
    AutoencoderModule,
    build_autoencoder,
    error_scale,
    feature_errors,
    reconstruction_error,
)


def test_architecture_matches_the_reference() -> None:
    net = build_autoencoder(10)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (10, 24),
        (24, 12),
        (12, 6),
        (6, 12),
        (12, 24),
        (24, 10),
    ]
    kinds = [type(m).__name__ for m in net]
    # BatchNorm/LeakyReLU/Dropout after the four hidden Linears, not after the bottleneck or output
    assert kinds.count("BatchNorm1d") == 4 and kinds.count("LeakyReLU") == 4 and kinds.count("Dropout") == 4
    assert kinds[kinds.index("Linear", 0) :][:4] == ["Linear", "BatchNorm1d", "LeakyReLU", "Dropout"]
    bottleneck = [i for i, m in enumerate(net) if isinstance(m, nn.Linear) and m.out_features == 6][0]
    assert isinstance(net[bottleneck + 1], nn.Linear)
    assert isinstance(net[-1], nn.Linear)


def test_threshold_is_the_percentile_of_the_best_epoch(small_frame: pd.DataFrame, tmp_path) -> None:
    model, dm, trainer = fit_autoencoder(small_frame, tmp_path)
    model.restore_best_weights()
    per_feature = feature_errors(model.net, dm.ae_val).numpy()
    scale = np.maximum(per_feature.mean(axis=0), ERROR_SCALE_FLOOR)
    assert model.error_scale.numpy() == pytest.approx(scale, rel=1e-5)  # the best epoch's, restored with it
    scores = (per_feature / scale).mean(axis=1)
    assert float(model.threshold) == pytest.approx(np.percentile(scores, 99.5), rel=1e-5)
    assert reconstruction_error(model.net, dm.ae_val, scale=model.error_scale).numpy() == pytest.approx(scores)
    assert float(model.best_val_loss) == pytest.approx(per_feature.mean(), rel=1e-5)  # early stopping: plain MSE
    assert float(model.best_val_loss) <= float(trainer.callback_metrics["val_loss"]) + 1e-6


def test_the_score_weighs_each_feature_by_its_usual_error() -> None:
    net = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3))
    net.weight.data[2, 2] = 0.0  # feature 2 always comes back as 0: its error is its value squared
    x = torch.tensor([[1.0, 1.0, 0.1], [1.0, 1.0, 1.0]])
    plain = reconstruction_error(net, x).numpy()
    assert plain == pytest.approx([0.01 / 3, 1.0 / 3])
    scale = error_scale(feature_errors(net, torch.tensor([[0.0, 0.0, 0.1], [0.0, 0.0, -0.1]])))
    assert scale.numpy() == pytest.approx([ERROR_SCALE_FLOOR, ERROR_SCALE_FLOOR, 0.01])
    weighted = reconstruction_error(net, x, scale=scale).numpy()
    assert weighted == pytest.approx([1.0 / 3, 100.0 / 3])  # in units of the feature's usual error


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_trains_with_gradient_clipping_at_each_precision(small_frame: pd.DataFrame, tmp_path, precision: str) -> None:
    # found on an H100: a fused AdamW under mixed precision makes Lightning refuse clipping
    model, _, trainer = fit_autoencoder(small_frame, tmp_path, max_epochs=1, precision=precision)
    fused = trainer.optimizers[0].defaults["fused"]
    assert fused == (precision == "32-true")
    assert np.isfinite(float(model.threshold))


class _SeedBeforeEachBatch(L.Callback):
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, *args: object) -> None:
        torch.manual_seed(self.seed)


def test_a_step_is_the_reference_step_with_norm_clipping(tmp_path) -> None:
    # zero grad, backward, clip the norm to 1, AdamW: the same update as a hand-written step
    torch.manual_seed(0)
    batch = torch.randn(64, 10) * 50  # large errors, so the gradient norm is clipped
    model = AutoencoderModule(10)
    reference = build_autoencoder(10)
    reference.load_state_dict(model.net.state_dict())
    optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3, weight_decay=1e-5)
    torch.manual_seed(1)  # the same dropout masks on both sides
    loss = nn.functional.mse_loss(reference(batch), batch)
    loss.backward()
    assert float(nn.utils.clip_grad_norm_(reference.parameters(), 1.0)) > 1.0
    optimizer.step()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[_SeedBeforeEachBatch(1)],
    )
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batch, batch_size=64))
    for key, value in reference.state_dict().items():
        assert torch.allclose(model.net.state_dict()[key], value, atol=1e-6), key


def test_the_plateau_schedule_steps_once_per_validation(small_frame: pd.DataFrame, tmp_path) -> None:
    _, _, trainer = fit_autoencoder(small_frame, tmp_path, max_epochs=3)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 3
    assert scheduler.best == pytest.approx(float(trainer.lightning_module.best_val_loss), rel=1e-6)


def test_best_weights_travel_in_the_checkpoint(small_frame: pd.DataFrame, tmp_path) -> None:
    model, _, trainer = fit_autoencoder(small_frame, tmp_path, max_epochs=2)
    path = tmp_path / "ae.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)  # no pickled objects
    assert "best_state_dict" in checkpoint
    fresh = AutoencoderModule(model.hparams.n_inputs)
    fresh.on_load_checkpoint(checkpoint)
    fresh.restore_best_weights()
    model.restore_best_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_gather_unique_drops_sampler_padding(small_frame: pd.DataFrame, tmp_path) -> None:
    model, _, _ = fit_autoencoder(small_frame, tmp_path, max_epochs=1)
    errors = torch.tensor([[0.5, 5.0], [0.1, 1.0], [0.3, 3.0], [0.5, 5.0]], dtype=torch.float64)
    index = torch.tensor([2, 0, 1, 2])  # row 2 repeated, as DistributedSampler pads
    assert model._gather_unique(errors, index).tolist() == [[0.1, 1.0], [0.3, 3.0], [0.5, 5.0]]
