"""The explain stage on a GPU gives the CPU's numbers (runs where CUDA is; skipped elsewhere): token
attributions, the image/question share and the deletion/insertion curves of a small random model."""

import numpy as np
import pytest
import torch

from vqa_interp.attribution.faithfulness import curves_for_map_sets
from vqa_interp.attribution.question import image_question_share, token_attributions
from vqa_interp.data.images import InputGeometry
from vqa_interp.models import KazemiModel, KazemiNetwork, Net, SmallConvBackbone

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def small_model_and_batch():
    torch.manual_seed(0)
    backbone = SmallConvBackbone(32)
    net = Net(
        50,
        v_features=backbone.out_channels,
        embedding_features=32,
        lstm_features=64,
        mid_features=32,
        glimpses=2,
        classifier_mid=64,
        max_answers=12,
        drop=0.0,
    )
    model = KazemiModel(
        KazemiNetwork(backbone, net).eval(),
        {f"w{i}": i for i in range(1, 50)},
        {f"a{i}": i for i in range(12)},
        InputGeometry(32, 1.0),
    )
    images = torch.randn(6, 3, 32, 32)
    q = torch.randint(1, 50, (6, 7))
    q_len = torch.tensor([7, 7, 6, 5, 5, 3])
    q[torch.arange(7)[None, :] >= q_len[:, None]] = 0
    with torch.no_grad():
        targets = model.forward(images, (q, q_len)).argmax(1)
    return model, images, q, q_len, targets


def on(device, model, images, q, q_len, targets):
    model = model.to(device)
    images, q, targets = images.to(device), q.to(device), targets.to(device)
    with torch.backends.cudnn.flags(enabled=False):  # LSTM backward in eval mode
        tokens, _ = token_attributions(model, images, (q, q_len), targets, n_steps=16, internal_batch_size=32)
        share, _ = image_question_share(model, images, (q, q_len), targets, n_steps=16, internal_batch_size=32)
    maps = {"m": np.random.default_rng(0).random((6, 32, 32))}
    curves = curves_for_map_sets(model, images, maps, (q, q_len), targets, steps=5, batch_size=8)["m"]
    return tokens.cpu().numpy(), share.cpu().numpy(), curves["deletion"], curves["insertion"]


def test_the_explain_functions_give_the_cpus_numbers_on_the_gpu():
    model, images, q, q_len, targets = small_model_and_batch()
    cpu = on("cpu", model, images, q, q_len, targets)
    gpu = on("cuda", model, images, q, q_len, targets)
    for name, a, b in zip(("tokens", "share", "deletion", "insertion"), cpu, gpu):
        np.testing.assert_allclose(b, a, atol=1e-4, err_msg=name)
