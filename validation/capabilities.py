"""What the installed torch can run, probed at run time, never guessed from its version number.

Each case needs some things of torch: its optimizer's constructor arguments (``decoupled_weight_decay`` came to
``torch.optim.Adam`` after 2.6), a kernel for its implementation, dtype and device (a fused CPU kernel for float16),
the model's ops in its dtype, a compiler for ``torch.compile``. :func:`unsupported` tries each, on a tiny tensor,
and returns why the installed torch cannot run the case, or None. Such a case is reported as "unsupported by torch
X: <reason>" and counted apart: it neither passes nor fails the run. A case torch can run keeps every check.

Where the twin can say the same computation with ops an older torch has, it does so instead of skipping, and says
so in the case's note (:func:`fallbacks`): the MSE loss of float16/bfloat16 on the CPU, which torch 2.4 does
not implement, is then written out as ``((output - target) ** 2).mean()``, the same formula (torch's
``mse_loss`` is the mean of the squared differences).

The probes are cached per process: each runs once per (optimizer, implementation, dtype, device).
"""
import functools
import importlib.util
import inspect
import shutil

from .optimizers import OPTIMIZERS

# The implementation values that change the numbers torch computes, and what each needs of torch beyond the
# optimizer's own arguments: the torch keyword arguments they pass.
PATH_ARGUMENTS = {"forloop": ("foreach",), "foreach": ("foreach",), "fused": ("fused",), "compiled": (),
                  "capturable": ("capturable",), "differentiable": ("differentiable", "foreach"),
                  "tensor-lr": (), "grad-scaler": ("fused",)}


def _torch():
    import torch
    return torch


def version():
    return _torch().__version__


@functools.cache
def _arguments(optimizer):
    """The keyword arguments the optimizer's torch class (or twin) takes."""
    cls = OPTIMIZERS[optimizer].torch_optimizer_class(_torch())
    names = set()
    for klass in cls.__mro__:   # a twin's **hyperparameters go on to the torch class it derives from
        parameters = inspect.signature(klass.__init__).parameters.values() if "__init__" in vars(klass) else ()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if "__init__" in vars(klass) and not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return frozenset(names)


def missing_argument(case, impl_kwargs):
    """The first constructor argument of the case the installed torch's class lacks, or None."""
    arguments = _arguments(case.optimizer)
    for name in list(case.kwargs) + [name for group in case.groups for name, _ in group[1]] + list(impl_kwargs):
        if name not in arguments:
            return name
    return None


@functools.cache
def _step_error(optimizer, impl_kwargs, tensor_lr, grad_scaler, dtype, device):
    """One step of the optimizer with the implementation's arguments on a 3-element param, through a GradScaler on
    that path: None, or torch's error. The param does not require grad (a differentiable step updates it in place
    under autograd, which torch refuses for a leaf that requires grad)."""
    torch = _torch()
    kind = dict(dtype=getattr(torch, dtype), device=device)
    lr = torch.tensor(0.01, dtype=torch.float64 if dtype == "float64" else torch.float32, device=device) \
        if tensor_lr else 0.01
    cls = OPTIMIZERS[optimizer].torch_optimizer_class(torch)
    try:
        if grad_scaler:
            param = torch.nn.Parameter(torch.ones(3, **kind))
            optimizer = cls([param], lr=lr, **dict(impl_kwargs))
            scaler = torch.amp.GradScaler(device)
            scaler.scale(param.float().sum()).backward()
            scaler.step(optimizer)
        else:
            param = torch.ones(3, **kind)
            param.grad = torch.full_like(param, 0.5)
            cls([param], lr=lr, **dict(impl_kwargs)).step()
    except (RuntimeError, TypeError, ValueError, NotImplementedError, AssertionError, AttributeError) as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


@functools.cache
def _ops_error(dtype, device, activation):
    """A Linear, the activation and the MSE's ops forward and backward in ``dtype`` on ``device``: None or the error."""
    torch = _torch()
    kind = dict(dtype=getattr(torch, dtype), device=device)
    layer = torch.nn.Linear(2, 1).to(**kind)
    try:
        out = getattr(torch, activation)(layer(torch.ones(3, 2, **kind))) if activation != "identity" else \
            layer(torch.ones(3, 2, **kind))
        ((out - torch.zeros_like(out)) ** 2).mean().backward()
    except (RuntimeError, NotImplementedError) as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


@functools.cache
def mse_loss_supported(dtype, device):
    """Whether ``torch.nn.functional.mse_loss`` runs forward and backward in ``dtype`` on ``device``."""
    torch = _torch()
    x = torch.ones(3, dtype=getattr(torch, dtype), device=device, requires_grad=True)
    try:
        torch.nn.functional.mse_loss(x, torch.zeros_like(x)).backward()
    except (RuntimeError, NotImplementedError):
        return False
    return True


@functools.cache
def _compiler_missing(device):
    """Why ``torch.compile`` cannot build for ``device`` here, or None (inductor needs a C++ compiler on the CPU and
    Triton on a GPU)."""
    torch = _torch()
    if not hasattr(torch, "compile"):
        return "torch has no torch.compile"
    if device == "cpu":
        from torch._inductor import config
        compiler = getattr(config.cpp, "cxx", (None, "g++"))
        names = [name for name in (compiler if isinstance(compiler, tuple) else (compiler,)) if name]
        if not any(shutil.which(name) for name in names + ["g++", "c++", "clang++"]):
            return "torch.compile needs a C++ compiler on the CPU, and none is on PATH"
        return None
    if importlib.util.find_spec("triton") is None:
        return "torch.compile needs Triton on a GPU, and it is not installed"
    return None


def unsupported(case, impl_kwargs):
    """Why the installed torch cannot run ``case`` (one line), or None. ``impl_kwargs``: the torch keyword arguments
    of the case's implementation (:func:`refwd_validation.twin.torch_impl_kwargs`)."""
    if case.kind == "constructor" or case.device == "cuda" and not _torch().cuda.is_available():
        return None   # (a cuda case without a CUDA device is the twin's CudaUnavailableError: a usage error)
    name = missing_argument(case, impl_kwargs)
    if name is not None:
        cls = OPTIMIZERS[case.optimizer].torch_optimizer_class(_torch()).__name__
        return f"{cls} has no argument {name!r}"
    if case.impl == "compiled":
        reason = _compiler_missing(case.device)
        if reason:
            return reason
    error = _ops_error(case.dtype, case.device, case.activation)
    if error is not None:
        return f"the model's ops in {case.dtype} on {case.device}: {error}"
    probe_kwargs = {key: value for key, value in impl_kwargs.items()}
    error = _step_error(case.optimizer, tuple(sorted(probe_kwargs.items())), case.impl == "tensor-lr",
                        case.impl == "grad-scaler", case.dtype, case.device)
    if error is not None:
        return f"{case.impl} step in {case.dtype} on {case.device}: {error}"
    return None


def fallbacks(case):
    """The ops the twin writes out because the installed torch lacks them for the case: [(what, instead)]."""
    if case.kind == "constructor" or case.device == "cuda" and not _torch().cuda.is_available():
        return []
    if mse_loss_supported(case.dtype, case.device):
        return []
    return [(f"mse_loss in {case.dtype} on {case.device}", "((output - target) ** 2).mean()")]
