"""fold_batchnorms on random Conv/Linear + BatchNorm configurations (hypothesis), and export_onnx's failed checks."""
import warnings
import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck

from fasterprune.deploy import fold_batchnorms, export_onnx

BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}

@st.composite
def conv_bn(draw):
    "A random Conv(1/2/3d) + BatchNorm (+ ReLU) model in eval mode with random statistics, and an input"
    d = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    ci, co = groups*draw(st.integers(1, 3)), groups*draw(st.integers(1, 3))
    k, stride, dil = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pad = draw(st.integers(0, 1))
    affine, bias = draw(st.booleans()), draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    bn = BN[d](co, affine=affine, eps=draw(st.sampled_from([1e-5, 1e-3])))
    m = nn.Sequential(CONV[d](ci, co, k, stride, pad, dil, groups=groups, bias=bias), bn, nn.ReLU())
    if affine: nn.init.uniform_(bn.weight, -2, 2); nn.init.normal_(bn.bias)
    bn.running_mean.normal_(); bn.running_var.uniform_(.1, 3)
    size = dil*(k - 1) + 1 + draw(st.integers(0, 3))
    return m.eval(), torch.randn(2, ci, *[size]*d)

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_bn())
def test_fold_conv_bn_same_outputs(case):
    "Every Conv + BatchNorm is folded; the outputs are the model's in eval mode; the model is unchanged"
    m, x = case
    before = {k: v.clone() for k, v in m.state_dict().items()}
    f = fold_batchnorms(m)
    assert f.folded_ == [('0', '1')] and isinstance(f[1], nn.Identity)
    with torch.no_grad(): torch.testing.assert_close(f(x), m(x), atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert isinstance(m[1], nn.modules.batchnorm._BatchNorm)

@settings(max_examples=20, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.booleans(), st.integers(0, 2**16))
def test_fold_linear_bn(n_in, n_out, bias, seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(n_in, n_out, bias=bias), nn.BatchNorm1d(n_out))
    nn.init.uniform_(m[1].weight, -2, 2); m[1].running_mean.normal_(); m[1].running_var.uniform_(.1, 3)
    m.eval(); x = torch.randn(5, n_in)
    f = fold_batchnorms(m, x)
    with torch.no_grad(): torch.testing.assert_close(f(x), m(x), atol=1e-5, rtol=1e-5)

def test_fold_train_mode_model_gives_eval_copy():
    "A model in train mode: the copy is in eval mode (running statistics), the model stays in train mode"
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    m(torch.randn(8, 3, 6, 6))
    f = fold_batchnorms(m)
    assert m.training and not f.training

def test_export_float_check_fails(tmp_path):
    "atol=0: onnxruntime never matches PyTorch to the last bit on a CNN; the error names it and no file is left"
    pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8*4*4, 3)).eval()
    with pytest.raises(ValueError, match='differ from PyTorch'):
        export_onnx(m, torch.randn(4, 3, 6, 6), tmp_path/'m.onnx', atol=0.)
    assert list(tmp_path.iterdir()) == []
    r = export_onnx(m, torch.randn(4, 3, 6, 6), tmp_path/'m.onnx')
    assert r['max_abs_diff'] > 0 and list(tmp_path.iterdir()) == [tmp_path/'m.onnx']
