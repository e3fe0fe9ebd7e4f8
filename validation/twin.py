"""The torch twin of a case: torch's model and optimizer over refwd's initial params, run live or one step at a time.

The twin copies refwd's initial params into ``torch.nn.Linear`` or ``torch.nn.Sequential`` (no transposes:
refwd's weights already have torch's (out_features, in_features) shape) and builds torch's optimizer with the
same hyperparameters and param groups, parameter names standing for tensors. :func:`torch_trajectory` runs
torch and yields one :class:`TorchStep` per step: everything one step consumed and produced, as NumPy arrays,
and nothing from earlier steps (memory stays flat). :class:`TorchStepper` takes one step from given params,
grads and state (the replay of a recording). :func:`one_thread` is the one place that pins torch's threads.
"""
import contextlib
import functools
import logging
from dataclasses import dataclass

import numpy as np

import refwd

from . import capabilities, scenario
from .dtypes import LOW_PRECISION
from .optimizers import OPTIMIZERS


class CudaUnavailableError(RuntimeError):
    """The case asks for cuda and torch has no CUDA device."""


def import_torch():
    import torch
    return torch


@contextlib.contextmanager
def one_thread():
    """torch on one CPU thread: the tensors are tiny (one thread is faster and steadier on a busy machine), and
    how a matrix product splits its sums over threads changes its last bits, so a recording must not depend on
    the machine's core count."""
    torch = import_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def to_numpy(tensor, dtype):
    """A torch tensor as a NumPy array in refwd's compute dtype (float16/bfloat16 upcast exactly to float64)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if dtype in LOW_PRECISION:
        return tensor.double().numpy()
    return tensor.numpy().copy()


def torch_impl_kwargs(case):
    """torch's keyword arguments for the case's implementation path (docs/oracle.md, "Implementation paths")."""
    fused_or_forloop = {"fused": True} if OPTIMIZERS[case.optimizer].fused else {"foreach": False}
    return {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True},
            "compiled": {},                                  # torch's default path, under torch.compile
            "capturable": {"capturable": True},
            "differentiable": {"differentiable": True, "foreach": False},
            "tensor-lr": fused_or_forloop,                   # a Tensor lr goes into the fused kernels as a tensor
            "grad-scaler": {"fused": True}}[case.impl]


def tensor_lr(case, lr):
    """The case's lr as torch holds it on the tensor-lr path: a 0-d tensor, float64 for float64 params (the same
    value as the Python float) and float32 otherwise (as ``torch.tensor(lr)`` makes it)."""
    torch = import_torch()
    dtype = torch.float64 if case.dtype == "float64" else torch.float32
    return torch.tensor(lr, dtype=dtype, device=torch_device(case))


def set_lr(group, key, lr):
    """Set a param group's lr for the next step and return the value torch will use: a Tensor lr is filled in
    place (as torch's schedulers do), and is then the lr rounded to the tensor's dtype."""
    torch = import_torch()
    if torch.is_tensor(group[key]):
        group[key].fill_(lr)
        return float(group[key].item())
    group[key] = lr
    return lr


def stepper(case, optimizer):
    """The call that takes one optimizer step on the case's path (the grad-scaler path steps in :func:`scaled_step`)."""
    torch = import_torch()
    if case.impl == "compiled":
        torch._dynamo.reset()   # a fresh cache per case: graphs kept from earlier cases would reach dynamo's
        # recompile limit, after which it silently runs eagerly; and no warning that the profiler's record_function
        # (in every optimizer step) is ignored
        logging.getLogger("torch._dynamo.variables.ctx_manager").setLevel(logging.ERROR)
        import torch._inductor.config
        torch._inductor.config.compile_threads = 1   # a case's few small kernels: no pool of compile workers to start
        return torch.compile(optimizer.step)
    if case.impl == "differentiable":
        return functools.partial(_step_differentiably, optimizer)
    return optimizer.step


def _step_differentiably(optimizer):
    """optimizer.step() with ``differentiable=True``, which runs under autograd: the nn.Module's leaf params stop
    requiring grad for the step (torch refuses an in-place update of a leaf that requires grad), as a
    meta-learning user's non-leaf params would not trip it."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        optimizer.step()
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


GRAD_SCALER = {"init_scale": 2.0 ** 10, "growth_interval": 2}   # grows every 2 clean steps, halves on an inf


def grad_scaler(case, **overrides):
    """A ``torch.amp.GradScaler`` for the grad-scaler path, else None."""
    if case.impl != "grad-scaler":
        return None
    torch = import_torch()
    return torch.amp.GradScaler(case.device, **dict(GRAD_SCALER, **overrides))


def unscaled(grad, scale):
    """A gradient of the scaled loss divided by GradScaler's scale (a power of two: exact), kept an array."""
    return grad if scale == 1.0 else np.asarray(grad / scale)


def scaled_step(scaler, optimizer):
    """GradScaler's step: a fused optimizer gets ``grad_scale`` and ``found_inf`` and unscales inside its kernel,
    skipping the step where an inf or NaN was found; then the scale is updated."""
    scaler.step(optimizer)
    scaler.update()


def torch_device(case):
    torch = import_torch()
    if case.device == "cuda" and not torch.cuda.is_available():
        raise CudaUnavailableError("cuda was asked for, but torch.cuda.is_available() is False")
    return torch.device(case.device)


def torch_model(case, params):
    """nn.Linear or nn.Sequential(Linear, act, ..., Linear) holding a copy of refwd's ``params``."""
    torch = import_torch()
    nn = torch.nn
    model = scenario.refwd_model(case)
    if isinstance(model, refwd.Linear):
        torch_model = nn.Linear(model.in_features, model.out_features)
    else:
        activations = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
        layers = []
        for i, (n_in, n_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(model.sizes) - 2:
                layers.append(activations[model.activation]())
        torch_model = nn.Sequential(*layers)
    if case.scalar_bias:   # the last Linear's bias as a 0-d parameter (F.linear broadcasts it)
        last = torch_model if isinstance(torch_model, nn.Linear) else torch_model[-1]
        last.bias = nn.Parameter(torch.zeros(()))
    torch_model = torch_model.to(device=torch_device(case), dtype=getattr(torch, case.dtype))
    named = dict(torch_model.named_parameters())
    if list(named) != list(params):
        raise AssertionError(f"torch names {list(named)} differ from refwd's {list(params)}")
    with torch.no_grad():
        for name, tensor in named.items():
            tensor.copy_(torch.tensor(np.asarray(params[name], dtype=np.float64)))  # a copy: may be read-only
    return torch_model, named


def torch_optimizer(case, named):
    """torch's optimizer of the case over the named tensors, with the case's param groups and implementation."""
    torch = import_torch()
    groups = [dict(overrides, params=[named[name] for name in chosen])
              for chosen, overrides in scenario.group_names(case, list(named))]
    kwargs = case.kwargs
    if case.impl == "tensor-lr":
        kwargs = dict(kwargs, lr=tensor_lr(case, kwargs["lr"]))
        groups = [dict(group, lr=tensor_lr(case, group["lr"])) if "lr" in group else group for group in groups]
    optimizer_class = OPTIMIZERS[case.optimizer].torch_optimizer_class(torch)
    return optimizer_class(groups, **kwargs, **torch_impl_kwargs(case))


def loss(case, model, x, y, scale):
    """torch's MSE loss of the case, times the loss scale. Where the installed torch has no ``mse_loss`` for the
    dtype and device (float16/bfloat16 on the CPU in torch 2.4), the same mean of squared differences is
    written out (:func:`refwd_validation.capabilities.fallbacks`)."""
    torch = import_torch()
    output = model(x)
    if capabilities.mse_loss_supported(case.dtype, case.device):
        value = torch.nn.functional.mse_loss(output, y)
    else:
        value = ((output - y) ** 2).mean()
    return value * scale if scale != 1.0 else value


@dataclass
class TorchStep:
    """One torch step: its inputs (before) and outputs (after), as NumPy arrays in refwd's compute dtype.

    ``state`` and ``new_state`` map each parameter name to its optimizer state with torch's keys; ``step``
    counts are Python ints. ``grads`` holds None for a parameter whose grad was None at this step;
    ``all_grads`` holds every gradient autograd computed (before the None schedule was applied).
    ``gradients_checked`` is False where the gradients are refwd's own (a function target): nothing to check.
    ``transformed`` names the state keys converted from another stored form (one more rounding each).
    ``state_dict``: at a case's ``round_trip_at`` step, torch's ``state_dict()`` after the step (tensors as
    NumPy), which torch then went on from through refwd (:func:`round_trip`); None at other steps.
    On the grad-scaler path, ``grads`` and ``all_grads`` are torch's scaled gradients divided by the scale (a power
    of two, so exactly the unscaled ones), as the fused kernel unscales them; ``grad_scale`` is that scale.
    """

    step: int
    lrs: list
    loss_scale: float
    x: np.ndarray
    y: np.ndarray
    params: dict
    all_grads: dict
    grads: dict
    loss: float
    state: dict
    new_params: dict
    new_state: dict
    gradients_checked: bool = True
    transformed: frozenset = frozenset()
    state_dict: dict | None = None
    grad_scale: float = 1.0


def state_numpy(state, dtype):
    """torch's state of one parameter as NumPy arrays (``step`` as a Python int)."""
    out = {}
    for key, value in state.items():
        if key == "step":
            out[key] = int(value.item()) if hasattr(value, "item") else int(value)
        else:
            out[key] = to_numpy(value, dtype)
    return out


def torch_trajectory(case, steps=None, *, make_optimizer=None, read_state=None, lr_key="lr", transformed=frozenset()):
    """Run the torch twin for ``steps`` (default: the case's) and yield a :class:`TorchStep` per step.

    ``make_optimizer(named)`` builds another torch-style optimizer than the case's (a target), and
    ``read_state(optimizer, name, tensor, lrs, stepped)`` reads its state in refwd's keys after a step (``stepped``:
    the parameter had a gradient); ``lr_key`` is its groups' name for the lr.
    """
    torch = import_torch()
    model, named = torch_model(case, scenario.initial_params(case))
    optimizer = (make_optimizer or functools.partial(torch_optimizer, case))(named)
    step_optimizer, scaler = stepper(case, optimizer), grad_scaler(case)
    base_lrs = [float(group[lr_key]) for group in optimizer.param_groups]
    device, torch_dtype, dtype = torch_device(case), getattr(torch, case.dtype), case.dtype
    params = {name: to_numpy(tensor, dtype) for name, tensor in named.items()}
    state = {name: {} for name in named}
    for step in range(1, (steps or case.total_steps) + 1):
        lrs = [set_lr(group, lr_key, lr * case.lr_factor(step)) for group, lr in zip(optimizer.param_groups, base_lrs)]
        x64, y64 = scenario.batch(case, step)
        x = torch.from_numpy(x64).to(device=device, dtype=torch_dtype)
        y = torch.from_numpy(y64).to(device=device, dtype=torch_dtype)
        scale = scenario.loss_scale(case, step)
        optimizer.zero_grad(set_to_none=True)
        step_loss = loss(case, model, x, y, scale)
        grad_scale = 1.0 if scaler is None else scaler.get_scale()   # a power of two: unscaling is exact
        (step_loss if scaler is None else scaler.scale(step_loss)).backward()
        all_grads = {name: unscaled(to_numpy(tensor.grad, dtype), grad_scale) for name, tensor in named.items()}
        grads = {}
        for name, tensor in named.items():
            if case.grad_is_none(name, step):
                tensor.grad = None
            grads[name] = None if tensor.grad is None else all_grads[name]
        for name, index, value in case.injected(step):   # an inf, -inf or NaN in one element of one grad
            if named[name].grad is None:
                continue
            with torch.no_grad():
                named[name].grad[index] = value
            grads[name] = unscaled(to_numpy(named[name].grad, dtype), grad_scale)
        if scaler is None:
            step_optimizer()
        else:
            scaled_step(scaler, optimizer)
        saved = None
        if step == case.round_trip_at and make_optimizer is None:   # a target's state_dict is not torch's
            optimizer, saved = round_trip(case, optimizer, named)
            step_optimizer = stepper(case, optimizer)
        new_params = {name: to_numpy(tensor, dtype) for name, tensor in named.items()}
        if read_state is None:
            new_state = {name: state_numpy(optimizer.state[tensor], dtype) if tensor in optimizer.state else {}
                         for name, tensor in named.items()}
        else:
            new_state = {name: read_state(optimizer, name, tensor, lrs, grads[name] is not None)
                         for name, tensor in named.items()}
        yield TorchStep(step=step, lrs=lrs, loss_scale=scale, x=to_numpy(x, dtype), y=to_numpy(y, dtype),
                        params=params, all_grads=all_grads, grads=grads, loss=float(step_loss.item()),
                        state=state, new_params=new_params, new_state=new_state, transformed=transformed,
                        state_dict=saved, grad_scale=grad_scale)
        params, state = new_params, new_state


def round_trip(case, optimizer, named):
    """torch's state_dict → refwd's optimizer → refwd's state_dict → a new torch optimizer of the case.

    Returns the new torch optimizer, which the run goes on with, and torch's state_dict as NumPy.
    """
    from . import interop
    saved = interop.numpy_state_dict(optimizer.state_dict())
    through_refwd = scenario.refwd_optimizer(case, list(named))
    through_refwd.load_state_dict(saved)
    fresh = torch_optimizer(case, named)
    fresh.load_state_dict(interop.torch_state_dict(through_refwd))
    return fresh, saved


class Tape:
    """A torch trajectory that keeps what it yields (``--record``): the harness consumes it as it would the live
    trajectory, and :meth:`finish` runs torch to the end if the harness stopped early. ``error`` is torch's
    error text where torch raised (the steps before it are kept)."""

    def __init__(self, case):
        self.steps, self.error = [], None
        self._trajectory = torch_trajectory(case)

    def __iter__(self):
        try:
            for step in self._trajectory:
                self.steps.append(step)
                yield step
        except Exception as error:  # torch's own exception, recorded as text
            self.error = f"{type(error).__name__}: {error}"
            raise

    def finish(self):
        """Run torch to the end of the case (if the consumer stopped early); return (steps, error)."""
        if self.error is None:
            try:
                for _ in self:
                    pass
            except Exception:
                pass
        return self.steps, self.error


class TorchStepper:
    """torch's model and optimizer of a case, stepped from given inputs: the replay of a recording.

    :meth:`loss_and_grads` is autograd at given params on a given batch; :meth:`step` loads given params,
    grads and optimizer state into torch and takes one optimizer step.
    """

    def __init__(self, case, initial_params):
        torch = self.torch = import_torch()
        self.case = case
        self.model, self.named = torch_model(case, initial_params)
        self.optimizer = torch_optimizer(case, self.named)
        self.step_optimizer = stepper(case, self.optimizer)
        self.base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.device, self.torch_dtype = torch_device(case), getattr(torch, case.dtype)

    def tensor(self, array):
        """A new torch tensor (never a view of the caller's array: torch's in-place ops must not reach it)."""
        return self.torch.tensor(np.asarray(array, dtype=np.float64), device=self.device).to(self.torch_dtype)

    def load_params(self, params):
        with self.torch.no_grad():
            for name, tensor in self.named.items():
                tensor.copy_(self.tensor(params[name]))

    def loss_and_grads(self, params, x, y, scale):
        self.load_params(params)
        self.optimizer.zero_grad(set_to_none=True)
        step_loss = loss(self.case, self.model, self.tensor(x), self.tensor(y), scale)
        step_loss.backward()
        return float(step_loss.item()), {name: to_numpy(t.grad, self.case.dtype) for name, t in self.named.items()}

    def step(self, params, grads, state, lrs):
        """One optimizer step from ``params``, ``grads`` (None: no grad) and ``state``; returns (params, state)."""
        self.load_params(params)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            set_lr(group, "lr", lr)
        for name, tensor in self.named.items():
            tensor.grad = None if grads[name] is None else self.tensor(grads[name])
            self._load_state(tensor, state[name])
        scaler = grad_scaler(self.case, init_scale=1.0)   # the recorded grads are unscaled: a scale of 1
        if scaler is None:
            self.step_optimizer()
        else:
            scaler.scale(self.torch.ones((), device=self.device))   # makes the scaler's scale tensor
            scaled_step(scaler, self.optimizer)
        dtype = self.case.dtype
        return ({name: to_numpy(tensor, dtype) for name, tensor in self.named.items()},
                {name: state_numpy(self.optimizer.state[tensor], dtype) if tensor in self.optimizer.state else {}
                 for name, tensor in self.named.items()})

    def _load_state(self, param, state):
        """Make the optimizer's state of ``param`` hold exactly ``state`` (in place where the tensors exist)."""
        torch, optimizer = self.torch, self.optimizer
        if not state:
            optimizer.state.pop(param, None)
            return
        current = optimizer.state[param]
        for key in [key for key in current if key not in state]:
            del current[key]
        for key, value in state.items():
            if key == "step":
                if torch.is_tensor(current.get(key)):
                    current[key].fill_(float(value))
                else:  # torch keeps a float32 step (float64 under a float64 default dtype) on the CPU
                    current[key] = torch.tensor(float(value), dtype=torch.float32 if torch.get_default_dtype()
                                                != torch.float64 else torch.float64)
            elif torch.is_tensor(current.get(key)):
                current[key].copy_(self.tensor(value))
            else:
                current[key] = self.tensor(value).clone()
