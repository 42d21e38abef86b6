"""Temporary patches of Keras layer attributes (``call``, ``activation``), for the explainers' hooks.

A leaf module (imports nothing from ``validator``). Every patch is made under one process-wide re-entrant
lock, held until the patch is undone, and restored in a ``finally``: two explainers tracing the same model
at once cannot interleave their patches (and restore each other's wrappers), and an exception anywhere,
even while a patch is being applied, leaves no wrapper behind. A patched attribute only changes behaviour in
the thread that patched it: another thread that runs the model meanwhile (``model.predict``) gets the
original layer.
"""

from __future__ import annotations

import contextlib
import threading

#: Held while any layer attribute is patched. Re-entrant: one thread may stack several patches.
PATCH_LOCK = threading.RLock()
_MISSING = object()


@contextlib.contextmanager
def patched(obj, attribute: str, replacement):
    """Set ``obj.<attribute>`` to ``replacement`` (an instance attribute) while inside, then restore exactly
    what was there before (an instance attribute, or none so that the class attribute shows again).

    ``replacement`` is called as ``replacement(original, *args, **kwargs)`` in the patching thread; other
    threads get ``original(*args, **kwargs)``.
    """
    with PATCH_LOCK:
        previous = obj.__dict__.get(attribute, _MISSING)
        original = getattr(obj, attribute)
        owner = threading.get_ident()

        def dispatch(*args, **kwargs):
            if threading.get_ident() == owner:
                return replacement(original, *args, **kwargs)
            return original(*args, **kwargs)

        try:
            setattr(obj, attribute, dispatch)
            yield
        finally:
            if previous is _MISSING:
                obj.__dict__.pop(attribute, None)
            else:
                setattr(obj, attribute, previous)


@contextlib.contextmanager
def bypass_head(head_layer, keras):
    """Run ``head_layer`` without its soft activation while inside: a Softmax/Activation layer returns its
    input, any other layer uses a linear activation. ``head_layer`` None: no patch."""
    if head_layer is None:
        yield
        return
    if isinstance(head_layer, keras.layers.Softmax | keras.layers.Activation):
        with patched(head_layer, "call", lambda _original, inputs, *args, **kwargs: inputs):
            yield
    else:
        with patched(head_layer, "activation", lambda _original, inputs, *args, **kwargs: inputs):
            yield


def is_patched(obj, attribute: str) -> bool:
    """Whether ``obj.<attribute>`` is currently an instance attribute (tests: no hook left behind)."""
    return attribute in obj.__dict__


__all__ = ["PATCH_LOCK", "bypass_head", "is_patched", "patched"]
