import json

import pytest
import torch

from pipelines.generation.options import SamplingConfig
from pipelines.generation.sampling import draw, sampling_distribution, uniform_noise


def test_distribution_equals_upstream_on_every_case(fixtures):
    cases = json.loads((fixtures / "sampling.json").read_text(encoding="utf-8"))
    assert len(cases) == 20
    for case in cases:
        probs = torch.tensor(case["probs"], dtype=torch.float32)
        got = sampling_distribution(probs[None], case["top_k"], case["top_p"], case["temperature"])[0]
        want = torch.tensor(case["final_distribution"])
        assert (got.double() - want).abs().max().item() < 1e-6, (case["top_k"], case["top_p"], case["temperature"])


def test_top_k_then_top_p_then_temperature_order():
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    # top-k 3 -> [.444, .333, .222]; top-p .7 keeps the token that crosses .7 -> first two
    d = sampling_distribution(probs, top_k=3, top_p=0.7, temperature=1.0)
    torch.testing.assert_close(d, torch.tensor([[4 / 7, 3 / 7, 0.0, 0.0]]))
    hot = sampling_distribution(probs, top_k=0, top_p=1.0, temperature=2.0)
    expected = probs.sqrt() / probs.sqrt().sum()
    torch.testing.assert_close(hot, expected)


def test_draws_follow_the_distribution():
    dist = torch.tensor([0.5, 0.3, 0.2, 0.0])
    n = 40000
    ids = draw(dist.expand(n, -1), torch.full((n,), 11), torch.arange(n))
    freq = torch.bincount(ids, minlength=4).float() / n
    torch.testing.assert_close(freq, dist, atol=0.015, rtol=0)
    assert freq[3] == 0


def test_noise_is_a_function_of_seed_and_step_only():
    seeds, steps = torch.tensor([1, 2, 3]), torch.tensor([5, 5, 9])
    a = uniform_noise(seeds, steps, 128)
    b = uniform_noise(seeds[[2, 0]], steps[[2, 0]], 128)  # other batch composition
    assert torch.equal(a[[2, 0]], b)
    assert not torch.equal(a[0], a[1])
    assert 0 < a.min() and a.max() < 1


def test_config_validation():
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError):
        SamplingConfig(temperature=0)
    assert SamplingConfig() == SamplingConfig(top_k=9, top_p=0.9, temperature=1.2)
