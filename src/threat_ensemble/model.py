"""The autoencoder: a LightningModule that learns normal traffic and sets its own anomaly threshold."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

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


@torch.no_grad()
def reconstruction_error(net: nn.Module, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
    """Per-row mean squared reconstruction error, in eval mode, batched to bound memory."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = [((net(chunk.to(device)) - chunk.to(device)) ** 2).mean(dim=1).cpu() for chunk in torch.split(x, batch_size)]
    net.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


class AutoencoderModule(L.LightningModule):
    """Trains on scaled normal rows. Each validation epoch gathers every rank's per-row errors
    (dropping the DistributedSampler's padding by row index), so ``val_loss`` and the percentile
    threshold are exact over the whole validation set. The weights and threshold of the best epoch
    are kept and travel in checkpoints."""

    def __init__(
        self,
        n_inputs: int,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        threshold_percentile: float = 99.5,
        lr_factor: float = 0.5,
        lr_patience: int = 5,
        min_lr: float = 1e-6,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_autoencoder(n_inputs)
        self.register_buffer("threshold", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("best_val_loss", torch.tensor(float("inf"), dtype=torch.float64))
        self._val_errors: list[torch.Tensor] = []
        self._val_index: list[torch.Tensor] = []
        self._best_state: dict[str, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = nn.functional.mse_loss(self.net(batch), batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_errors.clear()
        self._val_index.clear()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, index = batch
        self._val_errors.append(((self.net(x) - x) ** 2).mean(dim=1).double())
        self._val_index.append(index)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val_errors:
            return
        errors = self._gather_unique(torch.cat(self._val_errors), torch.cat(self._val_index))
        val_loss = errors.mean()
        threshold = torch.quantile(errors, self.hparams.threshold_percentile / 100.0)
        self.log("val_loss", val_loss.float(), prog_bar=True)
        self.log("ae_threshold", threshold.float())
        if val_loss < self.best_val_loss:
            self.best_val_loss.fill_(val_loss)
            self.threshold.fill_(threshold)
            self._best_state = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def _gather_unique(self, errors: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """All ranks' errors, one per validation row, ordered by row index."""
        if self.trainer.world_size > 1:
            errors = self.all_gather(errors).reshape(-1)
            index = self.all_gather(index).reshape(-1)
        unique, position = torch.unique(index, return_inverse=True)
        out = torch.empty(len(unique), dtype=errors.dtype, device=errors.device)
        out.scatter_(0, position, errors)  # padded duplicates carry the same value
        return out

    def on_train_epoch_end(self) -> None:
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=False)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            betas=(0.9, 0.999),
            fused=True,
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=self.hparams.lr_factor,
            patience=self.hparams.lr_patience,
            min_lr=self.hparams.min_lr,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"},
        }

    # ------------------------------------------------------------- best weights
    def restore_best_weights(self) -> None:
        """Load the best epoch's weights (and its threshold); idempotent."""
        if self._best_state is not None:
            self.load_state_dict(self._best_state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._best_state is not None:
            checkpoint["best_state_dict"] = self._best_state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._best_state = checkpoint.get("best_state_dict")
