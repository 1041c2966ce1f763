import pytest
import torch
import torch.nn as nn

from benchmark.cell.models import create_model, probe
from benchmark.core.config import ModelConfig
from benchmark.core.errors import UserError

# One architecture per family the suite is expected to handle (and that EDropout will prune).
FAMILIES = ["resnet18", "mobilenetv3_small_050", "efficientnet_b0", "convnext_atto", "regnetx_002"]


@pytest.mark.parametrize("arch", FAMILIES)
def test_timm_families_take_classes_and_channels_from_the_dataset(arch):
    torch.manual_seed(0)
    model = create_model(ModelConfig(arch=arch), num_classes=7, in_chans=1, input_size=32)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_small_input_gives_resnet_the_cifar_stem():
    model = create_model(ModelConfig(arch="resnet18"), 10, 3, 32)  # auto: on at 32 px
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    feats = model.forward_features(torch.randn(1, 3, 32, 32))
    assert feats.shape[-1] == 4  # 32 / 8: only the three stage strides remain

    imagenet = create_model(ModelConfig(arch="resnet18"), 10, 3, 224)  # auto: off at 224 px
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)
    forced_off = create_model(ModelConfig(arch="resnet18", small_input=False), 10, 3, 32)
    assert forced_off.conv1.stride == (2, 2)


def test_small_input_on_an_arch_without_a_resnet_stem_is_a_clear_error():
    assert probe(ModelConfig(arch="efficientnet_b0"), 1, 16) is False  # auto: left alone
    assert probe(ModelConfig(arch="resnet18"), 1, 16) is True
    with pytest.raises(UserError, match="model.small_input.*efficientnet_b0"):
        probe(ModelConfig(arch="efficientnet_b0", small_input=True), 1, 16)


def test_an_input_too_small_for_the_arch_is_caught_before_training():
    # ConvNeXt downsamples 32x: at 16 px a 2x2 downsampling conv meets a 1x1 map
    with pytest.raises(UserError, match="convnext_atto.*16x16.*data.input_size"):
        probe(ModelConfig(arch="convnext_atto"), 1, 16)
    assert probe(ModelConfig(arch="convnext_atto"), 1, 32) is False


def test_unknown_arch_suggests_close_names():
    with pytest.raises(UserError) as err:
        create_model(ModelConfig(arch="resnet181"), 10, 3, 32)
    assert "unknown arch 'resnet181'" in str(err.value) and "resnet18" in str(err.value)


def test_models_are_initialised_from_the_seed():
    torch.manual_seed(3)
    a = create_model(ModelConfig(arch="resnet18"), 10, 1, 16)
    torch.manual_seed(3)
    b = create_model(ModelConfig(arch="resnet18"), 10, 1, 16)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
