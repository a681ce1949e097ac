"""The gradient attacks of `trustforge.models` against ART's, and their contracts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from trustforge.data import AttackSpace
from trustforge.models import fgsm, pgd


@pytest.fixture(scope="module")
def digits_net():
    """A small CNN on sklearn's digits (pixels / 16 in [0, 1]) with standardisation inside, trained briefly."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    mean, std = float(x.mean()), float(x.std())
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.GELU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10))
    opt = torch.optim.Adam(body.parameters(), lr=0.01)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(body((x[:1400] - mean) / std), y[:1400]).backward()
        opt.step()
    body.eval()
    return body, x[1400:1600], y[1400:1600], mean, std


def _space(mean: float, std: float) -> AttackSpace:
    return AttackSpace(np.full((1, 1, 1), -mean / std), np.full((1, 1, 1), (1 - mean) / std), np.full((1, 1, 1), 1 / std))


def _art(body, mean, std):
    pytest.importorskip("art")
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=body,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 8, 8),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        preprocessing=(mean, std),
    )


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_pgd_and_fgsm_equal_art_on_the_same_images(digits_net, norm):
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    body, x, y, mean, std = digits_net
    clf = _art(body, mean, std)
    eps = 0.1 if norm == "inf" else 1.0
    ours_in = ((x - mean) / std,)
    loss = nn.CrossEntropyLoss()
    space = [_space(mean, std)]
    onehot = np.eye(10)[y.numpy()]

    ref = FastGradientMethod(clf, norm=np.inf if norm == "inf" else 2, eps=eps).generate(x.numpy(), y=onehot)
    (adv,) = fgsm(body, ours_in, y, loss, space, epsilon=eps, norm=norm)
    assert np.abs(adv.numpy() * std + mean - ref).max() < 1e-4

    ref = ProjectedGradientDescent(
        clf, norm=np.inf if norm == "inf" else 2, eps=eps, eps_step=eps / 4, max_iter=10, verbose=False
    ).generate(x.numpy(), y=onehot)
    (adv,) = pgd(body, ours_in, y, loss, space, epsilon=eps, steps=10, step_size=eps / 4, norm=norm)
    pixels = adv.numpy() * std + mean
    assert np.abs(pixels - ref).max() < 1e-3
    ours_acc = float((body(adv).argmax(1) == y).float().mean())
    art_acc = float((clf.predict(ref).argmax(1) == y.numpy()).mean())
    assert abs(ours_acc - art_acc) <= 0.005
    clean = float((body(ours_in[0]).argmax(1) == y).float().mean())
    assert ours_acc < clean - 0.2, "the attack did not hurt the model"


def test_the_adversarial_input_stays_in_bounds_and_in_the_ball(digits_net):
    body, x, y, mean, std = digits_net
    gen = torch.Generator().manual_seed(3)
    for norm, eps in (("inf", 0.2), ("2", 1.5)):
        (adv,) = pgd(
            body,
            ((x - mean) / std,),
            y,
            nn.CrossEntropyLoss(),
            [_space(mean, std)],
            epsilon=eps,
            steps=5,
            step_size=eps / 3,
            norm=norm,
            random_start=True,
            generator=gen,
        )
        pixels = adv * std + mean
        assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
        d = (pixels - x).reshape(len(x), -1)
        size = d.abs().max(1).values if norm == "inf" else d.norm(dim=1)
        assert float(size.max()) <= eps + 1e-4


def test_per_sample_epsilon_and_mask(digits_net):
    body, x, y, mean, std = digits_net
    eps = torch.linspace(0, 0.3, len(x))
    mask = np.zeros((1, 8, 8), bool)
    mask[:, :4] = True  # only the top half moves
    space = AttackSpace(np.full((1, 1, 1), -mean / std), np.full((1, 1, 1), (1 - mean) / std), np.full((1, 1, 1), 1 / std), mask=mask)
    encoded = (x - mean) / std
    (adv,) = fgsm(body, (encoded,), y, nn.CrossEntropyLoss(), [space], epsilon=eps)
    moved = (adv - encoded).abs() * std  # in pixels
    assert float(moved[:, :, 4:].max()) == 0.0  # masked elements are returned exactly
    assert float(moved[0].max()) == 0.0 and float(moved[-1].max()) > 0.29


def test_bad_arguments_are_refused(digits_net):
    body, x, y, mean, std = digits_net
    args = (body, ((x - mean) / std,), y, nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="no input"):
        pgd(*args, [None], epsilon=0.1, steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="epsilon"):
        pgd(*args, [_space(mean, std)], epsilon=-0.1, steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="norm"):
        pgd(*args, [_space(mean, std)], epsilon=0.1, steps=1, step_size=0.1, norm="1")
