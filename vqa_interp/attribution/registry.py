"""The method registry: name -> :class:`Method` (how to build its attribution function, its options).

An attribution function maps ``(pixels [B, 3, S, S], target, question)`` to attributions
``[B, 3, S, S]`` w.r.t. the pixels, where ``target`` and ``question`` are the model's own encodings
of the target answers and the questions (tuples of tensors, batch first, see
:mod:`vqa_interp.models.base`). A method is built for a loaded model (the
model interface, never a module path) and names the attachment points it needs from it
(``needs``), so a model that lacks one is refused before any work. Methods are registered by their
family files (:mod:`vqa_interp.attribution.captum_methods` holds the table of Captum classes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from vqa_interp.errors import ConfigError

AttributeFn = Callable[[torch.Tensor, tuple, tuple], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """One attribution method.

    ``build(model, options) -> AttributeFn`` for a :class:`~vqa_interp.models.base.VqaModel`;
    ``options`` maps each allowed option key to its default (the config file
    ``conf/method/<name>.yaml`` sets them); ``aliases`` are other config names for the same method
    (the paper's short names); ``needs`` the model's attachment points it uses (``a|b``: either)
    (:data:`vqa_interp.models.base.ATTACHMENTS`). A model-free reference map (``kind``
    ``"baseline"``, see :mod:`vqa_interp.attribution.baselines`) has ``baseline(context, options)
    -> map [S, S] | None`` instead of ``build``.
    """

    name: str
    build: Callable[[Any, dict], AttributeFn] | None
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""
    reference: str = ""
    aliases: tuple[str, ...] = ()
    kind: str = "model"
    baseline: Callable | None = None
    needs: tuple[str, ...] = ("pixels",)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict, hash=False)  # numeric options: [low, high]

    def validate(self, options: dict) -> None:
        """Raise :class:`ConfigError` for an unknown option, a value of the wrong type or one outside
        the option's range (``ranges``), before any work."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise ConfigError(
                f"method {self.name!r} has unknown option(s) {sorted(unknown)}; "
                f"allowed: {sorted(self.options) or 'none'}."
            )
        for key, value in options.items():
            default = self.options[key]
            if (
                default is not None
                and not isinstance(value, type(default))
                and not (isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool))
            ):
                raise ConfigError(f"method.{key}={value!r}: expected a {type(default).__name__} (default {default!r}).")
            if key in self.ranges and value is not None:
                low, high = self.ranges[key]
                if not low <= value <= high:
                    allowed = f">= {low:g}" if high == float("inf") else f"between {low:g} and {high:g}"
                    raise ConfigError(
                        f"method.{key}={value!r} is out of range for method={self.name}; expected a "
                        f"value {allowed} (default {default!r})."
                    )

    def runs_on(self, provides) -> bool:
        """Whether a model providing these attachment points serves every need (``a|b``: either)."""
        return all(any(a in provides for a in need.split("|")) for need in self.needs)

    def with_defaults(self, options: dict) -> dict:
        return {**self.options, **options}


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def make_attributor(model, method: str, options: dict) -> AttributeFn:
    """The attribution function of ``method`` (see :data:`METHODS`) for ``model`` (a
    :class:`~vqa_interp.models.base.VqaModel`)."""
    if method not in METHODS:
        raise ValueError(f"method.name: {method!r} is unknown; expected one of {sorted(METHODS)}")
    entry = METHODS[method]
    if entry.build is None:
        raise ValueError(f"method.name: {method!r} is a model-free baseline; it has no attribution function")
    from vqa_interp.models.base import as_target

    options = {k: v for k, v in options.items() if k != "name"}
    built = entry.build(model, entry.with_defaults(options))

    def attribute(x, target, question):
        return built(x, as_target(target), question)

    return attribute
