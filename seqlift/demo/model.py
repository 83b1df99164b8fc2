"""The small convolutional network shipped with the demo.

It is trained by ``scripts/make_demo.py`` on simulated 200 bp sequences in the
style of the DeepLIFT paper's simulation, with three binary tasks:

- task 0: the sequence contains a GATA motif (core ``GATAA``);
- task 1: the sequence contains a TAL1 E-box motif (core ``CAGCTG``/``CATCTG``);
- task 2: the sequence contains both.
"""

import torch
import torch.nn.functional as F
from torch import nn


class DemoCNN(nn.Module):
    """Two convolution blocks and two dense layers over one-hot DNA.

    Input is a one-hot tensor, shape=(N, 4, input_length), channels A, C, G, T
    (an all-zero column is an N). Output is one logit per task, shape=(N, n_tasks):
    task 0 = contains GATA, task 1 = contains TAL1, task 2 = contains both.

    Parameters
    ----------
    input_length : int
        Sequence length the network is built for.
    n_tasks : int
        Number of outputs (logits).
    n_filters : int
        Filters in each convolution layer.
    conv1_width, conv2_width : int
        Kernel widths of the two convolutions (odd, padded to keep the length).
    pool : int
        Max-pooling width and stride after each convolution.
    n_hidden : int
        Units in the hidden dense layer.
    dropout : float
        Dropout probability before the output layer.
    """

    def __init__(
        self, input_length=200, n_tasks=3, n_filters=32, conv1_width=15, conv2_width=7, pool=4, n_hidden=64, dropout=0.1
    ):
        super().__init__()
        self.input_length = input_length
        self.conv1 = nn.Conv1d(4, n_filters, conv1_width, padding=conv1_width // 2)
        self.bn1 = nn.BatchNorm1d(n_filters)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool1d(pool)
        self.conv2 = nn.Conv1d(n_filters, n_filters, conv2_width, padding=conv2_width // 2)
        self.pool2 = nn.MaxPool1d(pool)
        self.fc1 = nn.Linear(n_filters * (input_length // pool // pool), n_hidden)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(n_hidden, n_tasks)

    def forward(self, x):
        """Map one-hot input, shape=(N, 4, input_length), to logits, shape=(N, n_tasks)."""
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(self.dropout(self.relu3(self.fc1(x))))


class DemoBiLSTM(nn.Module):
    """A DanQ-style network: a convolution, max pooling, a bidirectional LSTM and a dense head.

    Input shape=(N, 4, input_length), one-hot A, C, G, T; output shape=(N, n_tasks) logits,
    with the tasks of :class:`DemoCNN`.

    Parameters
    ----------
    input_length : int
        Sequence length the network is built for.
    n_tasks : int
        Number of outputs (logits).
    n_filters : int
        Convolution filters (the LSTM's input size).
    conv_width : int
        Kernel width of the convolution (odd, padded to keep the length).
    pool : int
        Max-pooling width and stride.
    hidden : int
        LSTM units per direction.
    """

    def __init__(self, input_length=200, n_tasks=3, n_filters=32, conv_width=15, pool=4, hidden=24):
        super().__init__()
        self.input_length = input_length
        self.conv = nn.Conv1d(4, n_filters, conv_width, padding=conv_width // 2)
        self.pool = nn.MaxPool1d(pool)
        self.lstm = nn.LSTM(n_filters, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden * (input_length // pool), n_tasks)

    def forward(self, x):
        """Map one-hot input, shape=(N, 4, input_length), to logits, shape=(N, n_tasks)."""
        h = self.pool(F.relu(self.conv(x))).transpose(1, 2)  # (N, L', filters)
        h, _ = self.lstm(h)
        return self.fc(torch.flatten(h, 1))


class DemoAttention(nn.Module):
    """A convolution, max pooling, positional embeddings and one transformer encoder layer, then a dense head.

    The encoder layer holds multi-head self-attention (softmax of QK^T), layer norms and a GELU
    feed-forward block. Input shape=(N, 4, input_length); output shape=(N, n_tasks) logits, with
    the tasks of :class:`DemoCNN`.

    Parameters
    ----------
    input_length : int
        Sequence length the network is built for.
    n_tasks : int
        Number of outputs (logits).
    d_model : int
        Convolution filters and attention width.
    conv_width : int
        Kernel width of the convolution (odd, padded to keep the length).
    pool : int
        Max-pooling width and stride.
    n_heads : int
        Attention heads.
    """

    def __init__(self, input_length=200, n_tasks=3, d_model=32, conv_width=15, pool=4, n_heads=4):
        super().__init__()
        self.input_length = input_length
        self.conv = nn.Conv1d(4, d_model, conv_width, padding=conv_width // 2)
        self.pool = nn.MaxPool1d(pool)
        self.position = nn.Parameter(torch.zeros(1, input_length // pool, d_model))
        self.encoder = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.1, activation="gelu", batch_first=True
        )
        self.fc = nn.Linear(d_model, n_tasks)

    def forward(self, x):
        """Map one-hot input, shape=(N, 4, input_length), to logits, shape=(N, n_tasks)."""
        h = self.pool(F.relu(self.conv(x))).transpose(1, 2) + self.position  # (N, L', d_model)
        h = self.encoder(h)
        return self.fc(h.amax(dim=1))
