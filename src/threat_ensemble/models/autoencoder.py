"""The autoencoder: a LightningModule that learns normal traffic and sets its own anomaly threshold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from threat_ensemble.errors import InputError, TrainingDiverged

HIDDEN = (24, 12, 6)


def build_autoencoder(
    n_features: int, hidden: tuple[int, ...] = HIDDEN, dropout: float = 0.2, slope: float = 0.2
) -> nn.Sequential:
    """Symmetric MLP ``d -> 24 -> 12 -> 6 -> 12 -> 24 -> d``; BatchNorm, LeakyReLU and Dropout
    after every hidden Linear, none after the bottleneck or the output."""
    widths = [n_features, *hidden, *reversed(hidden[:-1]), n_features]
    bottleneck = len(hidden) - 1
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i != bottleneck and i != len(widths) - 2:
            layers += [nn.BatchNorm1d(fan_out), nn.LeakyReLU(slope), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


# A feature's typical squared error on held-out normal rows is floored here (scaled units): a
# feature that normal traffic always reconstructs exactly weighs 1e6 times a unit deviation.
ERROR_SCALE_FLOOR = 1e-6


def _squared_errors_by_chunk(net: nn.Module, x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Each chunk's per-row, per-feature squared reconstruction errors (float64), in eval mode."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    try:
        with torch.no_grad():
            for chunk in torch.split(x, batch_size):
                chunk = chunk.to(device)
                yield ((net(chunk) - chunk) ** 2).double().cpu()
    finally:
        net.train(was_training)


def feature_errors(net: nn.Module, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
    """Per-row, per-feature squared reconstruction errors (float64)."""
    out = list(_squared_errors_by_chunk(net, x, batch_size))
    return torch.cat(out) if out else torch.empty((0, x.shape[-1]), dtype=torch.float64)


def error_scale(errors: torch.Tensor) -> torch.Tensor:
    """Each feature's mean squared error over normal rows, floored at ERROR_SCALE_FLOOR."""
    return errors.mean(dim=0).clamp_min(ERROR_SCALE_FLOOR)


def reconstruction_error(
    net: nn.Module, x: torch.Tensor, batch_size: int = 65536, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-row anomaly score: the mean over features of the squared reconstruction error, each
    feature's error divided by its ``scale`` (its typical error on held-out normal rows) when
    given, so that a few features far off their usual error are not drowned by many noisy ones.
    Without ``scale``, the plain mean squared error. Reduced chunk by chunk, so memory stays one
    chunk's worth however many rows are scored."""
    divisor = None if scale is None else scale.to(torch.float64).cpu()
    rows = [
        (errors if divisor is None else errors / divisor).mean(dim=1)
        for errors in _squared_errors_by_chunk(net, x, batch_size)
    ]
    return torch.cat(rows) if rows else torch.empty(0, dtype=torch.float64)


MAX_LAYER_WIDTH = 1 << 16  # bounds what a stored autoencoder may ask to build


def autoencoder_to_bytes(net: nn.Module, scale: torch.Tensor, hidden: tuple[int, ...] = HIDDEN) -> bytes:
    """The trained network, its error scale and its shape as safetensors bytes (tensors only: no
    pickle, nothing that runs when read)."""
    from safetensors.torch import save

    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors["error_scale"] = scale.detach().cpu().to(torch.float64).contiguous()
    tensors["shape.hidden"] = torch.tensor(list(hidden), dtype=torch.int64)
    return save(tensors)


def autoencoder_from_bytes(data: bytes, source: str) -> tuple[nn.Sequential, torch.Tensor]:
    """(network in eval mode, error scale) from :func:`autoencoder_to_bytes`; a file of another
    shape or with non-finite values is refused with one line naming ``source``."""
    from safetensors.torch import load

    try:
        tensors = load(data)
        hidden = tuple(int(v) for v in tensors.pop("shape.hidden").tolist())
        scale = tensors.pop("error_scale").to(torch.float64)
    except Exception as exc:  # not safetensors, or not ours
        raise InputError(f"{source}: not a readable autoencoder ({type(exc).__name__})") from None
    n_features = int(scale.numel())
    if not hidden or len(hidden) > 8 or not all(0 < h <= MAX_LAYER_WIDTH for h in hidden) or not (
        0 < n_features <= MAX_LAYER_WIDTH
    ):
        shape = f"{n_features} -> {list(hidden)[:8]}"
        raise InputError(f"{source}: autoencoder shape {shape} is not one this package builds")
    net = build_autoencoder(n_features, hidden)
    state = {k.removeprefix("net."): v for k, v in tensors.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        raise InputError(f"{source}: the weights do not fit a {n_features} -> {list(hidden)} autoencoder") from None
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()) or not bool(
        (torch.isfinite(scale) & (scale > 0)).all()
    ):
        raise InputError(f"{source}: weights or error scale are not finite numbers")
    return net.eval(), scale


class AutoencoderModule(L.LightningModule):
    """Trains on scaled normal rows. Each validation epoch gathers every rank's per-row, per-feature
    errors (dropping the DistributedSampler's padding by row index), so ``val_loss``, the error
    scale and the percentile threshold are exact over the whole validation set. The weights,
    error scale and threshold of the best epoch are kept and travel in checkpoints.

    The step is written out (Lightning's manual optimisation): zero the gradients, backward, clip the
    gradient norm, AdamW step, exactly the reference's order. On this model the automatic loop's
    closure and per-step hooks cost more than the arithmetic they wrap; the plateau scheduler is
    stepped here after each validation, so the checkpoint written after it already holds it."""

    def __init__(
        self,
        n_inputs: int,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        threshold_percentile: float = 99.5,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        min_lr: float = 1e-6,
        gradient_clip_norm: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # logged once by the run, not re-logged on resume
        self.automatic_optimization = False
        self.net = build_autoencoder(n_inputs)
        self.register_buffer("threshold", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("best_val_loss", torch.tensor(float("inf"), dtype=torch.float64))
        self.register_buffer("error_scale", torch.ones(n_inputs, dtype=torch.float64))
        self._val_errors: list[torch.Tensor] = []
        self._val_index: list[torch.Tensor] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self.last_val_loss: float | None = None  # the latest epoch's, kept in checkpoints
        self._train_loss_sum: torch.Tensor | None = None
        self._train_rows = 0
        self._throughput: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        loss = nn.functional.mse_loss(self.net(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.clip_gradients(
            optimizer, gradient_clip_val=self.hparams.gradient_clip_norm, gradient_clip_algorithm="norm"
        )
        optimizer.step()
        # Per-step self.log costs more than the step itself on this tiny model: accumulate on the
        # device (no host sync) and log the epoch mean once, in on_train_epoch_end.
        rows = batch.shape[0]
        if self._train_loss_sum is None or self._train_loss_sum.device != loss.device:
            self._train_loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
        self._train_loss_sum += loss.detach() * rows
        self._train_rows += rows
        return loss

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """On CPU the batch is already where it must be: skip Lightning's generic collection walk."""
        if device.type == "cpu" and isinstance(batch, torch.Tensor) and batch.device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _log_train_loss(self) -> None:
        if self._train_rows:
            assert self._train_loss_sum is not None
            mean = (self._train_loss_sum / self._train_rows).float()
            self.log("train_loss", mean, prog_bar=True, sync_dist=True)
        self._train_loss_sum, self._train_rows = None, 0

    def on_validation_epoch_start(self) -> None:
        self._val_errors.clear()
        self._val_index.clear()
        self._average_batchnorm_statistics()

    def _average_batchnorm_statistics(self) -> None:
        """Without SyncBatchNorm (CPU ranks), each rank's BatchNorm running statistics drift apart;
        average them before validation so every rank scores with the same model. Every rank runs
        this hook, so the collective never waits on a rank that skips it."""
        if self.trainer.world_size <= 1:
            return
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm1d) and not isinstance(module, nn.SyncBatchNorm):
                for buffer in (module.running_mean, module.running_var):
                    buffer.copy_(self.trainer.strategy.reduce(buffer, reduce_op="mean"))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, index = batch
        self._val_errors.append(((self.net(x) - x) ** 2).double())  # per feature: the error scale needs them
        self._val_index.append(index)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val_errors:
            return
        errors = self._gather_unique(torch.cat(self._val_errors), torch.cat(self._val_index))
        val_loss = errors.mean()  # the training objective (plain MSE) decides the best epoch
        if not torch.isfinite(val_loss):
            raise TrainingDiverged(
                f"training diverged: the autoencoder's validation loss is {val_loss.item()} at epoch "
                f"{self.current_epoch + 1}; try a lower --lr (now {self.hparams.lr:g})"
            )
        scale = error_scale(errors)
        threshold = torch.quantile((errors / scale).mean(dim=1), self.hparams.threshold_percentile / 100.0)
        self.log("val_loss", val_loss.float(), prog_bar=True)
        self.last_val_loss = float(val_loss)
        self.log("ae_threshold", threshold.float())
        self.lr_schedulers().step(val_loss.item())
        if val_loss < self.best_val_loss:
            self.best_val_loss.fill_(val_loss)
            self.threshold.fill_(threshold)
            self.error_scale.copy_(scale)
            self._best_state = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def _gather_unique(self, errors: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """All ranks' per-feature errors, one row per validation row, ordered by row index."""
        if self.trainer.world_size > 1:
            errors = self.all_gather(errors).reshape(-1, errors.shape[-1])
            index = self.all_gather(index).reshape(-1)
        unique, position = torch.unique(index, return_inverse=True)
        out = torch.empty((len(unique), errors.shape[-1]), dtype=errors.dtype, device=errors.device)
        out[position] = errors  # padded duplicates carry the same values
        return out

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        seen = self._train_rows * self.trainer.world_size  # read before _log_train_loss resets it
        self._log_train_loss()
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=False)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - getattr(self, "_epoch_start", time.perf_counter())
        if elapsed > 0:
            self._throughput.append(seen / elapsed)
            self.log("samples_per_s", seen / elapsed, sync_dist=False)

    def on_train_end(self) -> None:
        if self._throughput:
            median = float(np.median(self._throughput))
            rank_zero_info(f"autoencoder: {len(self._throughput)} epochs, median {median:,.0f} samples/s (all ranks)")

    def _fused_optimizer_allowed(self) -> bool:
        """A fused AdamW step is the fastest on CPU and GPU, but Lightning refuses gradient clipping
        with it under mixed precision (it unscales gradients itself), so only full precision fuses."""
        trainer = self._trainer
        return trainer is None or str(trainer.precision) in ("32-true", "32", "64-true", "64")

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            betas=(0.9, 0.999),
            fused=self._fused_optimizer_allowed(),
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=self.hparams.lr_factor,
            patience=self.hparams.lr_patience,
            min_lr=self.hparams.min_lr,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}  # stepped after validation

    # ------------------------------------------------------------- best weights
    def restore_best_weights(self) -> None:
        """Load the best epoch's weights (and its threshold); idempotent."""
        if self._best_state is not None:
            self.load_state_dict(self._best_state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._best_state is not None:
            checkpoint["best_state_dict"] = self._best_state
        checkpoint["last_val_loss"] = self.last_val_loss

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._best_state = checkpoint.get("best_state_dict")
        self.last_val_loss = checkpoint.get("last_val_loss")
