"""ThiNet's pieces: channel contributions of the next layer and the greedy removal order."""

import torch
import torch.nn as nn

from baselines.thinet import channel_contributions, greedy_order


def test_channel_contributions_add_up_to_the_conv_output():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1, stride=2, bias=False)
    x = torch.randn(3, 5, 9, 9)
    parts = channel_contributions(conv, x, samples=50, generator=torch.Generator().manual_seed(1))
    assert parts.shape == (5, 50)
    g = torch.Generator().manual_seed(1)  # the same draws as inside channel_contributions
    out = conv(x).detach()
    positions = out.shape[2] * out.shape[3]
    n = torch.randint(0, 3, (50,), generator=g)
    pos = torch.randint(0, positions, (50,), generator=g)
    o = torch.randint(0, 7, (50,), generator=g)
    expected = out.flatten(2)[n, o, pos]
    assert torch.allclose(parts.sum(0), expected, atol=1e-5)


def test_greedy_order_removes_what_the_next_layer_misses_least():
    signal = torch.tensor([1.0, -2.0, 3.0])
    contributions = torch.stack([signal, -signal, torch.zeros(3), 10 * signal])
    # channel 2 contributes nothing; 0 and 1 cancel each other, so removing both costs nothing,
    # although each alone is as large as the other; channel 3 matters most
    assert greedy_order(contributions).tolist() == [2, 0, 1, 3]
