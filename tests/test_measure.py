"""FLOP counting with per-signature records (dpir.measure.count_flops): the same total as counting every
call op by op, the fallback for value-dependent networks, and unchanged outputs."""
import torch
from torch import nn

from dpir.measure import count_flops


class Chain(nn.Module):
    """A sampler-like loop: one network called at every step, plus an op outside it."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
        self.head = nn.Conv2d(3, 3, 1)

    def forward(self, x, steps):
        for _ in range(steps):
            x = x - 0.1 * self.net(x)
        return self.head(x)


class ValueDependent(nn.Module):
    """FLOPs that depend on a tensor's values, not its shape: the records must not be trusted."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        for _ in range(self.calls % 3 + 1):     # 2, 3, 1, 2, 3, ... convolutions
            x = self.conv(x)
        return x


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Conv2d(3, 3, 3, padding=1)
        self.extra = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.extra(self.inner(x))


def _conv_flops(c_in, c_out, k, h, w):
    return 2 * c_in * c_out * k * k * h * w


def test_records_give_the_exact_total_of_counting_every_call():
    torch.manual_seed(0)
    m = Chain().eval()
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        with count_flops() as plain:
            ref = m(x, 10)
        with count_flops([m.net]) as fast:
            out = m(x, 10)
    per_step = _conv_flops(3, 8, 3, 6, 7) + _conv_flops(8, 3, 3, 6, 7)
    expected = 10 * per_step + _conv_flops(3, 3, 1, 6, 7)
    assert plain.get_total_flops() == expected
    assert fast.get_total_flops() == expected
    assert (fast.counted_calls, fast.replayed_calls) == (2, 8)
    assert torch.equal(out, ref)                       # replayed calls compute the same outputs
    assert "forward" not in m.net.__dict__             # the module is restored on exit


def test_a_new_shape_is_counted_on_its_own():
    m = Chain().eval()
    with torch.no_grad(), count_flops([m.net]) as fc:
        for size in [(5, 5), (5, 5), (5, 5), (4, 6), (4, 6), (4, 6), (5, 5)]:
            m.net(torch.rand(1, 3, *size))
    per = lambda h, w: _conv_flops(3, 8, 3, h, w) + _conv_flops(8, 3, 3, h, w)   # noqa: E731
    assert fc.get_total_flops() == 4 * per(5, 5) + 3 * per(4, 6)
    assert (fc.counted_calls, fc.replayed_calls) == (4, 3)


def test_value_dependent_flops_fall_back_to_counting_every_call():
    m = ValueDependent().eval()
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad(), count_flops([m]) as fc:
        for _ in range(6):
            m(x)
    # calls 1..6 run 2, 3, 1, 2, 3, 1 convolutions: 12 in all
    assert fc.get_total_flops() == 12 * _conv_flops(3, 3, 3, 4, 4)
    assert fc.replayed_calls == 0


def test_nested_recorded_modules_are_not_counted_twice():
    m = Outer().eval()
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad(), count_flops([m, m.inner]) as fc:
        for _ in range(5):
            m(x)
    assert fc.get_total_flops() == 5 * (_conv_flops(3, 3, 3, 5, 5) + _conv_flops(3, 3, 1, 5, 5))


def test_module_with_its_own_forward_attribute_gets_it_back():
    m = nn.Conv2d(3, 3, 1)
    own = m.forward
    m.forward = own                                   # an instance-level forward (e.g. a wrapper)
    with count_flops([m]):
        m(torch.rand(1, 3, 2, 2))
    assert m.__dict__["forward"] is own
