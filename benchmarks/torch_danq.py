"""A faithful PyTorch port of DanQ, the reference for training throughput.

Same layers and sizes as `danq.model.network.build_danq` with the `danq` preset: Conv1d 320 x 26
(valid), ReLU, MaxPool 13/13, dropout 0.2, BiLSTM 320 per direction (batch-first, fed
(batch, positions, channels)), dropout 0.5, Linear 925 + ReLU, Linear 919 with sigmoid and
binary cross-entropy, RMSprop lr 1e-3 with Keras's rho 0.9 and epsilon 1e-7.
PyTorch's LSTM keeps two bias vectors per gate (input and hidden), so the port has
2 x 4 x units more parameters than Keras's model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TorchDanQConfig:
    seq_len: int = 1000
    n_targets: int = 919
    conv_filters: int = 320
    conv_width: int = 26
    pool_size: int = 13
    lstm_units: int = 320
    dense_units: int = 925
    pool_dropout: float = 0.2
    lstm_dropout: float = 0.5

    @property
    def pooled_length(self) -> int:
        return (self.seq_len - self.conv_width + 1) // self.pool_size


class TorchDanQ(nn.Module):
    """Input (batch, seq_len, 4) one-hot, as the Keras model takes it; output logits."""

    def __init__(self, cfg: TorchDanQConfig) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, cfg.conv_filters, cfg.conv_width)
        self.pool = nn.MaxPool1d(cfg.pool_size, stride=cfg.pool_size)
        self.pool_dropout = nn.Dropout(cfg.pool_dropout)
        self.bilstm = nn.LSTM(
            cfg.conv_filters, cfg.lstm_units, batch_first=True, bidirectional=True
        )
        self.lstm_dropout = nn.Dropout(cfg.lstm_dropout)
        self.dense = nn.Linear(cfg.pooled_length * 2 * cfg.lstm_units, cfg.dense_units)
        self.targets = nn.Linear(cfg.dense_units, cfg.n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Conv1d wants channels first; the LSTM gets (batch, positions, channels) back.
        h = torch.relu(self.conv(x.transpose(1, 2)))
        h = self.pool_dropout(self.pool(h)).transpose(1, 2)
        h, _ = self.bilstm(h)
        h = self.lstm_dropout(h).flatten(1)
        return self.targets(torch.relu(self.dense(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class TorchTrainer:
    """The port with its optimizer and loss: one call of `step` trains on one batch."""

    def __init__(self, cfg: TorchDanQConfig, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = TorchDanQ(cfg).train()
        self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        # Sigmoid and binary cross-entropy in one numerically stable op.
        self.loss = nn.BCEWithLogitsLoss()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach().item()
