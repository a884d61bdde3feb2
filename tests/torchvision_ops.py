"""torchvision's wheel on this project's machines has a C extension built for a CUDA torch, and `import torchvision`
then fails registering `torchvision::nms`. `declare_torchvision_ops` declares the schemas of the ops that fail first,
so that torchvision's Python models (and timm, fastai.vision, and transformers, which import it when it is installed)
work; the ops themselves stay unusable. Where the extension loads, or torchvision is absent, nothing is declared.
tests/conftest.py calls it for every test; a notebook that imports transformers calls it in a hidden cell."""

import glob, importlib.util, os

import torch

_lib = None


def declare_torchvision_ops():
    "Declare `torchvision::nms` and `torchvision::qnms` if torchvision's C extension does not load (idempotent)"
    global _lib
    spec = importlib.util.find_spec("torchvision")
    if _lib is not None or spec is None or not spec.origin: return
    try:
        for so in glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")): torch.ops.load_library(so)
        return
    except OSError: pass
    try: torch.ops.torchvision.nms; return            # declared already (by another copy of this workaround)
    except (AttributeError, RuntimeError): pass
    _lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"): _lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
