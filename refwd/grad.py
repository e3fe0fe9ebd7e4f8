"""Gradients over the params mapping, by reverse-mode autodiff (HIPS autograd)."""
import autograd


def value_and_grad(loss_fn):
    """Wrap ``loss_fn(params) -> scalar`` into ``params -> (loss, grads)``.

    ``grads`` is a dict with the same names, order, shapes and dtypes as ``params``.
    """
    loss_and_grad = autograd.value_and_grad(loss_fn)

    def wrapped(params):
        loss, grads = loss_and_grad(dict(params))
        return loss, {name: grads[name] for name in params}

    return wrapped
