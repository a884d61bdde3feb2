"""Sparse checkpoints, sparse Linear layers and 2:4 weights (fasterprune.sparse).

Round trips are checked on bit patterns (integer views), independently of the module's own helpers; the 2:4 test at
the end runs only on a CUDA GPU with compute capability >= 8.0 and is skipped elsewhere."""
import copy, io, json, struct, warnings, zlib
import numpy as np, pytest, torch
from torch import nn
from hypothesis import given, settings, HealthCheck, strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from fasterprune.sparsifier import Sparsifier
from fasterprune.export import make_permanent
from fasterprune.sparse import *
from fasterprune.sparse import _write_sparse

SET = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.float8_e4m3fn, torch.float8_e5m2]
OTHERS = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
INT_OF_SIZE = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}
TORCH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}

def bits(t):
    "Bit patterns of `t` as integers (bools as 0/1 bytes)"
    if t.dtype == torch.bool: return t.to(torch.uint8)
    return t.view(TORCH_INT[t.element_size()]) if t.is_floating_point() else t

@st.composite
def tensors(draw):
    "A tensor of random bit patterns (NaNs, infinities, subnormals, -0.0 included), a share of them zero, maybe non-contiguous"
    dtype = draw(st.sampled_from(FLOATS + OTHERS))
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=4))
    p_zero, p_negzero = draw(st.floats(0, 1)), draw(st.sampled_from([0, .1, .5]))
    transpose = draw(st.booleans()) and len(shape) >= 2
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    full = shape[::-1] if transpose else shape
    n = int(np.prod(full))
    if dtype == torch.bool: t = torch.from_numpy(rng.integers(0, 2, n).astype(bool))
    else:
        size = torch.empty(0, dtype=dtype).element_size()
        it = INT_OF_SIZE[size] if dtype.is_floating_point else np.dtype(str(dtype).removeprefix('torch.'))
        raw = rng.integers(np.iinfo(it).min, np.iinfo(it).max, n, dtype=it, endpoint=True)
        raw[rng.random(n) < p_zero] = 0
        if dtype.is_floating_point:
            raw[(rng.random(n) < p_negzero) & (raw == 0)] = np.array(1 << (8*size - 1)).astype(it)   # -0.0
        t = torch.from_numpy(raw)
        if dtype.is_floating_point: t = t.view(dtype)
    t = t.reshape(full)
    return t.transpose(0, 1) if transpose else t

class Holder(nn.Module):
    "A module holding the given tensors as parameters (floats, on a coin flip) and buffers"
    def __init__(self, ts, as_param):
        super().__init__()
        for i, (t, p) in enumerate(zip(ts, as_param)):
            if p and t.is_floating_point(): self.register_parameter(f't{i}', nn.Parameter(t, requires_grad=False))
            else: self.register_buffer(f't{i}', t)

@SET
@given(ts=st.lists(tensors(), min_size=1, max_size=4), data=st.data(), min_sparsity=st.floats(0, 100))
def test_round_trip_bit_identical(tmp_path, ts, data, min_sparsity):
    src = Holder(ts, data.draw(st.lists(st.booleans(), min_size=len(ts), max_size=len(ts))))
    dst = Holder([torch.ones(t.shape, dtype=t.dtype) for t in ts], [True]*len(ts))
    path = save_sparse(src, tmp_path/'x.safetensors', min_sparsity=min_sparsity)
    assert load_sparse(dst, path) is dst
    got, stored = dst.state_dict(), load_file(str(path))
    with safe_open(str(path), 'pt') as f: index = json.loads(f.metadata()['tensors'])
    for k, a in src.state_dict().items():
        nz = bits(a) != 0                                                   # only +0.0 is a zero: -0.0 is a value
        zero_pct = 100 - 100*int(nz.sum())/max(a.numel(), 1)
        packed = a.is_floating_point() and a.numel() > 0 and zero_pct >= min_sparsity
        b = got[k]
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b)), k     # bit-identical, always
        # what is packed, and at what size: a bit per element and the stored elements
        assert index[k]['stored'] == ('bitmask' if packed else 'dense'), k
        if packed:
            assert stored['bitmask/'+k].numel() == (a.numel() + 7)//8
            assert stored['values/'+k].numel() == int(nz.sum()) and stored['values/'+k].dtype == a.dtype

def test_bit_order_is_little_endian(tmp_path):
    m = Holder([torch.tensor([0., 0., 0., 5., 0., 0., 0., 0., 0., 7.])], [True])
    save_sparse(m, tmp_path/'x.safetensors')
    s = load_file(str(tmp_path/'x.safetensors'))
    assert s['bitmask/t0'].tolist() == [1 << 3, 1 << 1] and s['values/t0'].tolist() == [5., 7.]
    with safe_open(str(tmp_path/'x.safetensors'), 'pt') as f: meta = f.metadata()
    assert set(meta) == {'format', 'version', 'bit_order', 'tensors', 'crc32', 'header_crc32'} and meta['version'] == '2', meta

def test_negative_zero_is_a_value(tmp_path):
    m = Holder([torch.tensor([0., -0., 0., 5., 0., 0., 0., -0.])], [True])
    save_sparse(m, tmp_path/'x.safetensors')
    s = load_file(str(tmp_path/'x.safetensors'))
    assert s['bitmask/t0'].tolist() == [0b10001010] and bits(s['values/t0']).tolist() == bits(torch.tensor([-0., 5., -0.])).tolist()
    n = load_sparse(Holder([torch.ones(8)], [True]), tmp_path/'x.safetensors')
    assert torch.signbit(n.t0).tolist() == [False, True, False, False, False, False, False, True]

def mlp(widths=(20, 30, 30, 5), seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, o in zip(widths, widths[1:]): layers += [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]
    return nn.Sequential(*layers[:-2])

def pruned_mlp(s=95, **kw):
    m = mlp(**kw); Sparsifier(m, prune_output=True).prune(s); make_permanent(m)
    m.train(); m(torch.randn(8, 20)); m.eval()        # running stats and num_batches_tracked move
    return m

def snapshot(m): return [t.clone() for t in m.state_dict().values()]
def unchanged(m, snap): return all(torch.equal(bits(a), bits(b)) for a, b in zip(snap, m.state_dict().values()))

@pytest.mark.parametrize('other, first', [
    (lambda: mlp((20, 30, 31, 5)), "'3.weight' is (31, 30) float32 in the model but (30, 30) float32 in the file"),
    (lambda: mlp((20, 30, 30, 5)).double(), "'0.weight' is (30, 20) float64 in the model but (30, 20) float32"),
    (lambda: mlp((20, 30, 30, 5, 5)), "'7.weight' is in the model but not in the file"),
    (lambda: mlp((20, 30, 30)), "'4.weight' is in the file but not in the model"),
    (lambda: nn.Sequential(nn.Linear(20, 30)), "'1.weight' is in the file but not in the model"),
])
def test_other_architecture_names_first_mismatch_and_changes_nothing(tmp_path, other, first):
    save_sparse(pruned_mlp(), tmp_path/'m.safetensors')
    m = other(); snap = snapshot(m)
    with pytest.raises(ValueError, match='does not fit this model') as e: load_sparse(m, tmp_path/'m.safetensors')
    assert first in str(e.value)
    assert unchanged(m, snap)

def test_buffers_round_trip_and_outputs_equal(tmp_path):
    m = pruned_mlp()
    save_sparse(m, tmp_path/'m.safetensors')
    n = load_sparse(mlp(seed=1).eval(), tmp_path/'m.safetensors')
    assert int(n[1].num_batches_tracked) == 1 and torch.equal(n[1].running_var, m[1].running_var)
    x = torch.randn(7, 20)
    with torch.no_grad(): assert torch.equal(n(x), m(x))

def neg_zeros(m): return sum(int((torch.signbit(p) & (p == 0)).sum()) for p in m.parameters())

def test_size_goal_95(tmp_path):
    "Pruned 95 % and made permanent, the pruned layers take <= 10 % of torch.save's bytes for them (about 1/32 + 5 %)"
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    sp = Sparsifier(m); sp.prune(95)
    pruned = [f'{n}.weight' for n, l in m.named_modules() if 'weight_mask' in l._buffers]
    assert pruned == ['0.weight', '2.weight']                              # the output layer is not pruned by default
    make_permanent(m)
    assert neg_zeros(m) == 0                                               # make_permanent leaves +0.0 only
    save_sparse(m, tmp_path/'s.safetensors')
    buf = io.BytesIO(); torch.save({k: m.state_dict()[k] for k in pruned}, buf)
    stored = load_file(str(tmp_path/'s.safetensors'))
    share = sum(v.numel()*v.element_size() for k, v in stored.items() if k.split('/', 1)[1] in pruned)
    assert share <= .10*buf.tell(), (share, buf.tell())

def test_negative_zeros_round_trip_and_normalise(tmp_path):
    "A model masked by multiplication (-0.0 where negative weights were pruned) is stored exactly; add_(0.) shrinks it"
    m = pruned_mlp(95)
    foreign = mlp()                                                        # the same weights before pruning...
    with torch.no_grad():
        for p, q in zip(foreign.parameters(), m.parameters()): p.mul_(q != 0)   # ...masked by multiplication
        foreign.load_state_dict({k: v for k, v in m.state_dict().items() if 'running' in k or 'batches' in k}, strict=False)
    assert neg_zeros(foreign) > 500 and neg_zeros(m) == 0
    save_sparse(foreign, tmp_path/'f.safetensors')
    back = load_sparse(mlp(seed=1), tmp_path/'f.safetensors')
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(foreign.state_dict().values(), back.state_dict().values()))
    assert neg_zeros(back) == neg_zeros(foreign)
    with torch.no_grad():
        for p in foreign.parameters(): p.add_(0.)
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(foreign.state_dict().values(), m.state_dict().values()))
    save_sparse(foreign, tmp_path/'n.safetensors'); save_sparse(m, tmp_path/'m.safetensors')
    size = lambda f: (tmp_path/f).stat().st_size
    assert size('n.safetensors') == size('m.safetensors') and size('f.safetensors') > 2*size('n.safetensors')

def test_bad_input(tmp_path):
    m = pruned_mlp()
    with pytest.raises(TypeError, match='nn.Module'): save_sparse(m.state_dict(), tmp_path/'x')
    with pytest.raises(ValueError, match='min_sparsity'): save_sparse(m, tmp_path/'x', min_sparsity=101)
    with pytest.raises(ValueError, match='min_sparsity'): save_sparse(m, tmp_path/'x', min_sparsity=True)
    with pytest.raises(TypeError, match='signed_zeros'): save_sparse(m, tmp_path/'x', signed_zeros=True)   # removed option
    masked = mlp(); Sparsifier(masked).prune(50)
    with pytest.raises(ValueError, match='make_permanent'): save_sparse(masked, tmp_path/'x')
    save_sparse(m, tmp_path/'m.safetensors')
    snap = snapshot(masked)
    with pytest.raises(ValueError, match='make_permanent'): load_sparse(masked, tmp_path/'m.safetensors')
    assert unchanged(masked, snap)
    with pytest.raises(FileNotFoundError): load_sparse(mlp(), tmp_path/'missing.safetensors')

def test_corrupt_and_foreign_files_are_refused(tmp_path):
    "Files with consistent checksums but wrong contents (as a buggy writer would make them), and files of other kinds"
    m = pruned_mlp(); p = tmp_path/'m.safetensors'
    save_sparse(m, p)
    with safe_open(str(p), 'pt') as f: meta = f.metadata()
    index, t = json.loads(meta['tensors']), load_file(str(p))
    t['values/0.weight'] = t['values/0.weight'][:-1]                       # one value short
    _write_sparse(t, index, tmp_path/'bad.safetensors')
    fresh = mlp(); snap = snapshot(fresh)
    with pytest.raises(ValueError, match="corrupt.*'0.weight'"): load_sparse(fresh, tmp_path/'bad.safetensors')
    assert unchanged(fresh, snap)
    del t['values/0.weight']
    _write_sparse(t, index, tmp_path/'bad2.safetensors')
    with pytest.raises(ValueError, match=r"corrupt.*\['values/0.weight'\] missing"): load_sparse(fresh, tmp_path/'bad2.safetensors')
    save_file(t, str(tmp_path/'bad3.safetensors'), metadata=meta)         # another table of tensors under the same CRC32
    with pytest.raises(ValueError, match='corrupt.*header'): load_sparse(fresh, tmp_path/'bad3.safetensors')
    save_file(load_file(str(p)), str(tmp_path/'plain.safetensors'))       # no metadata
    with pytest.raises(ValueError, match='not written by save_sparse'): load_sparse(fresh, tmp_path/'plain.safetensors')
    torch.save(m.state_dict(), tmp_path/'m.pt')
    with pytest.raises(ValueError, match='not a safetensors file'): load_sparse(fresh, tmp_path/'m.pt')
    assert unchanged(fresh, snap)

class WithExtra(nn.Linear):
    def get_extra_state(self): return {'note': 1}
    def set_extra_state(self, s): pass

def test_non_tensor_state_is_refused(tmp_path):
    with pytest.raises(TypeError, match="'_extra_state'"): save_sparse(WithExtra(3, 3), tmp_path/'x')

def test_sparse_linear_model_saves_too(tmp_path):
    m = to_sparse_linear(pruned_mlp())
    save_sparse(m, tmp_path/'s.safetensors')
    n = load_sparse(to_sparse_linear(pruned_mlp(seed=3)), tmp_path/'s.safetensors')
    x = torch.randn(5, 20)
    with torch.no_grad(): assert torch.equal(n(x), m(x))

# ------------------------------------------------------------------------------------------------ to_sparse_linear

@settings(max_examples=25, deadline=None)
@given(i=st.integers(1, 6), o=st.integers(1, 6), b=st.sampled_from([1, 2, 4]), s=st.floats(0, 100),
       layout=st.sampled_from(['csr', 'bsr']), bias=st.booleans(), batch=st.lists(st.integers(1, 4), max_size=2),
       seed=st.integers(0, 1000))
def test_sparse_linear_matches_dense(i, o, b, s, layout, bias, batch, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(i*b, o*b, bias=bias)
    Sparsifier(nn.Sequential(lin), prune_output=True).prune(s); make_permanent(lin)
    sp = to_sparse_linear(nn.Sequential(lin), layout, min_sparsity=0, blocksize=b)[0]
    assert isinstance(sp, SparseLinear)
    x = torch.randn(*batch, i*b)
    with torch.inference_mode(): y = sp(x)
    with torch.no_grad(): ref = lin(x)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)

def test_to_sparse_linear_selects_and_copies():
    m = pruned_mlp(95)
    with torch.no_grad(): m[6].weight.normal_()                            # the last layer dense again
    s = to_sparse_linear(m)
    assert [type(l).__name__ for l in s if 'Linear' in type(l).__name__] == ['SparseLinear', 'SparseLinear', 'Linear']
    assert all(type(l) is not SparseLinear for l in m)
    x = torch.randn(9, 20)
    with torch.inference_mode(): torch.testing.assert_close(s(x), m(x), atol=1e-5, rtol=1e-5)
    assert DEFAULT_MIN_SPARSITY == to_sparse_linear.__defaults__[1]

def test_to_sparse_linear_bad_input():
    m = pruned_mlp(95)
    with pytest.raises(ValueError, match='layout'): to_sparse_linear(m, 'coo')
    with pytest.raises(ValueError, match='min_sparsity'): to_sparse_linear(m, min_sparsity=200)
    with pytest.raises(ValueError, match='blocksize'): to_sparse_linear(m, 'bsr', blocksize=0)
    with pytest.raises(ValueError, match="layer '0'.*blocksize=4"): to_sparse_linear(mlp((22, 28, 4)), 'bsr', min_sparsity=0)
    with pytest.raises(ValueError, match="layer '0' has dtype bfloat16"): to_sparse_linear(m.to(torch.bfloat16))
    masked = mlp(); Sparsifier(masked).prune(95)
    with pytest.raises(ValueError, match='make_permanent'): to_sparse_linear(masked)
    with pytest.warns(UserWarning, match='no nn.Linear'): to_sparse_linear(mlp())

def test_bsr_refuses_backward_csr_allows_it():
    m = pruned_mlp(90)
    x = torch.randn(4, 20, requires_grad=True)
    to_sparse_linear(m, min_sparsity=0)(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match='inference only'): to_sparse_linear(m, 'bsr', min_sparsity=0, blocksize=5)(x)
    with torch.no_grad(): to_sparse_linear(m, 'bsr', min_sparsity=0, blocksize=5)(x)

# ------------------------------------------------------------------------------------------------ to_semi_structured

def model_24(widths=(64, 128, 64), dtype=torch.float16, seed=0):
    "A Linear stack pruned 2:4 (in float32, on the CPU), then cast to `dtype`"
    torch.manual_seed(seed)
    layers = []
    for i, o in zip(widths, widths[1:]): layers += [nn.Linear(i, o), nn.ReLU()]
    m = nn.Sequential(*layers[:-1])
    Sparsifier(m, '2:4', prune_output=True).prune(50); make_permanent(m)
    return m.to(dtype)

@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the errors of a machine without CUDA')
def test_semi_structured_errors_without_cuda():
    m = model_24(); snap = snapshot(m)
    with pytest.raises(RuntimeError, match='needs a CUDA GPU'): to_semi_structured(m)
    with pytest.raises(ValueError, match="layer '0' has dtype float32"): to_semi_structured(model_24(dtype=torch.float32))
    with torch.no_grad(): m[2].weight[5, :4] = 1
    with pytest.raises(ValueError, match=r"layer '2' is not 2:4 sparse: weight\[5, 0:4\] has 4 non-zeros"):
        to_semi_structured(m, include='*')
    with pytest.raises(ValueError, match="multiple of 64"): to_semi_structured(model_24((96, 64)), backend='cutlass')
    with pytest.raises(ValueError, match="no nn.Linear layer of the model is exactly 2:4"):
        to_semi_structured(mlp().half())
    assert all(type(p) is nn.Parameter for p in m.parameters())

def _sm80():
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)

@pytest.mark.skipif(not _sm80(), reason='needs a CUDA GPU with compute capability >= 8.0')
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_semi_structured_on_cuda(dtype):
    from torch.sparse import SparseSemiStructuredTensor
    m = model_24((256, 512, 128), dtype).cuda()
    dense = copy.deepcopy(m)
    assert to_semi_structured(m) is m
    assert all(isinstance(l.weight, SparseSemiStructuredTensor) for l in (m[0], m[2]))
    for shape in [(64, 256), (37, 256), (3, 5, 256)]:
        x = torch.randn(shape, device='cuda', dtype=dtype)
        with torch.no_grad(): y, ref = m(x), dense(x)
        assert y.shape == ref.shape
        tol = (1e-2 if dtype == torch.float16 else 4e-2) * float(ref.abs().max())
        torch.testing.assert_close(y.float(), ref.float(), atol=tol, rtol=0)
    with pytest.raises(ValueError, match="has dtype float32"): to_semi_structured(model_24((256, 512)).cuda().float())
    with pytest.raises(ValueError, match="is on cpu"): to_semi_structured(model_24((256, 512), dtype))

def test_sparse_linear_validates_loaded_indices():
    s = to_sparse_linear(pruned_mlp(95), min_sparsity=0)
    sd = s.state_dict()
    sd['0.col_indices'] = sd['0.col_indices'] + 1000                       # out of range
    with pytest.raises(RuntimeError, match='col_indices'): s.load_state_dict(sd)


# ------------------------------------------------------------------------------------------------ checksums

def header_of(data:bytes):
    "(start of the data, parsed JSON header) of safetensors bytes, read independently of fasterprune"
    n = struct.unpack('<Q', data[:8])[0]
    return 8 + n, json.loads(data[8:8 + n])

def test_checksums_are_crc32_of_the_file_bytes(tmp_path):
    "Each stored tensor's CRC32 is zlib.crc32 of its bytes in the file; the header's, of the header with its value zeroed"
    save_sparse(pruned_mlp(), tmp_path/'m.safetensors')
    data = (tmp_path/'m.safetensors').read_bytes()
    start, header = header_of(data)
    meta = header.pop('__metadata__')
    crcs = json.loads(meta['crc32'])
    assert set(crcs) == set(header) and len(header) > 5
    for name, e in header.items():
        a, b = e['data_offsets']
        assert crcs[name] == f'{zlib.crc32(data[start + a:start + b]):08x}', name
    field = f'"header_crc32":"{meta["header_crc32"]}"'.encode()
    zeroed = data[8:start].replace(field, b'"header_crc32":"00000000"')
    assert meta['header_crc32'] == f'{zlib.crc32(zeroed):08x}' != '00000000'

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ts=st.lists(tensors(), min_size=1, max_size=3), data=st.data())
def test_any_flipped_byte_is_refused_before_the_model_changes(tmp_path, ts, data):
    "One byte changed anywhere: an error naming the file and the header or the tensor whose bytes it is in; model unchanged"
    src = Holder(ts, [True]*len(ts))
    save_sparse(src, tmp_path/'x.safetensors')
    good = (tmp_path/'x.safetensors').read_bytes()
    start, header = header_of(good)
    i = data.draw(st.integers(0, len(good) - 1), label='byte')
    bad = bytearray(good); bad[i] ^= data.draw(st.integers(1, 255), label='xor')
    (tmp_path/'bad.safetensors').write_bytes(bad)
    dst = Holder([torch.ones(t.shape, dtype=t.dtype) for t in ts], [True]*len(ts)); snap = snapshot(dst)
    with pytest.raises(ValueError) as e: load_sparse(dst, tmp_path/'bad.safetensors')
    msg = str(e.value)
    assert 'bad.safetensors' in msg
    if i < start: assert 'header' in msg, msg
    else:
        name = next(k for k, v in header.items() if k != '__metadata__' and v['data_offsets'][0] <= i - start < v['data_offsets'][1])
        assert f"the bytes of {name.split('/', 1)[1]!r}" in msg and 'damaged' in msg, (name, msg)
    assert unchanged(dst, snap)

def save_v1(model, path):
    "A file as fasterprune wrote them before the checksums (format version 1), written here with safetensors directly"
    tensors, index = {}, {}
    for k, t in model.state_dict().items():
        t = t.detach().contiguous()
        nz = bits(t) != 0
        packed = t.is_floating_point() and t.numel() > 0 and int(nz.sum()) <= t.numel()//2
        if packed:
            tensors['bitmask/'+k] = torch.from_numpy(np.packbits(nz.reshape(-1).numpy(), bitorder='little'))
            tensors['values/'+k] = t.reshape(-1)[nz.reshape(-1)]
        else: tensors['dense/'+k] = t.clone()
        index[k] = dict(dtype=str(t.dtype).removeprefix('torch.'), shape=list(t.shape), stored='bitmask' if packed else 'dense')
    save_file(tensors, str(path), metadata=dict(format='fasterprune.sparse', version='1', bit_order='little',
                                                tensors=json.dumps(index)))

def test_old_format_loads_with_a_warning(tmp_path):
    m = pruned_mlp()
    save_v1(m, tmp_path/'v1.safetensors')
    with pytest.warns(UserWarning, match=r"v1.safetensors.*format version 1.*cannot be checked") as w:
        n = load_sparse(mlp(seed=1), tmp_path/'v1.safetensors')
    assert len(w) == 1 and w[0].filename == __file__                       # the warning points at the caller
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(m.state_dict().values(), n.state_dict().values()))
    data = bytearray((tmp_path/'v1.safetensors').read_bytes())           # ...and indeed: damage goes unseen
    start, header = header_of(data)
    data[start + header['values/0.weight']['data_offsets'][0] + 2] ^= 0x40
    (tmp_path/'v1bad.safetensors').write_bytes(data)
    with pytest.warns(UserWarning, match='cannot be checked'): bad = load_sparse(mlp(seed=1), tmp_path/'v1bad.safetensors')
    assert (bad[0].weight != m[0].weight).sum() == 1
    save_sparse(n, tmp_path/'v2.safetensors')                              # saving again adds the checksums
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        load_sparse(mlp(seed=2), tmp_path/'v2.safetensors')

def test_newer_version_is_refused(tmp_path):
    save_v1(pruned_mlp(), tmp_path/'v1.safetensors')
    t = load_file(str(tmp_path/'v1.safetensors'))
    with safe_open(str(tmp_path/'v1.safetensors'), 'pt') as f: meta = f.metadata()
    save_file(t, str(tmp_path/'v9.safetensors'), metadata={**meta, 'version': '9'})
    with pytest.raises(ValueError, match='format version 9; this fasterprune reads up to 2'): load_sparse(mlp(), tmp_path/'v9.safetensors')
