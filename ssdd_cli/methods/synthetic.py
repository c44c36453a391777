"""The distilled set as a differentiable module: pixels or bases, one target set per view.

One class covers every method and ablation (method.md §5.1, §6.2–6.4):

* images: pixels ``X (m, C, H, W)`` (KRR-ST) or bases ``x_i = Up(μ_x + C_x[i] B_x)`` (Boost);
* targets: pixels ``Y (m, D)`` or bases ``y_i = μ_y + C_y[i] B_y``;
* views: the identity plus predefined transforms; each non-identity view ``a`` has its own target
  coefficients ``C^a`` during distillation, replaced after distillation by an approximation network
  ``C^a ≈ C + h_a(C)`` (or kept, in the no-approximation ablation).

:meth:`SyntheticSet.support` returns the ``|A|·m`` (image, target) pairs the inner KRR and the pool
are trained on; ``expand`` calls the same method on a set rebuilt from a bundle, so what is
expanded is exactly what was distilled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..augment import apply_view
from ..bundle import (
    APPROX_PARAMS,
    IMAGE_BASIS,
    IMAGE_COEFFS,
    IMAGE_MEAN,
    IMAGES,
    REPR_BASIS,
    REPR_COEFFS,
    REPR_MEAN,
    TARGETS,
    approx_key,
    approx_keys,
    view_coeffs_key,
    view_targets_key,
)


class ApproxNet(nn.Sequential):
    """Approximation network ``h_a: R^c → R^c`` = ``Linear(c, k) → ReLU → Linear(k, c)`` (§6.4)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


def _key(view: str) -> str:
    return view.replace("+", "_plus_")


def decode_flat(flat: torch.Tensor, channels: int, image_size: int) -> torch.Tensor:
    """Images ``(m, C, H, W)`` from flat basis-side pixels ``(m, C·b·b)``: bilinear upsampling to ``image_size``."""
    side = math.isqrt(flat.shape[1] // channels)
    small = flat.reshape(-1, channels, side, side)
    if side == image_size:
        return small
    return F.interpolate(small, size=(image_size, image_size), mode="bilinear", align_corners=False)


def _orthonormalise(basis: torch.Tensor) -> torch.Tensor:
    """Replace the rows of ``basis (r, P)`` by an orthonormal basis of their span in place; return ``R (r, r)``.

    ``basisᵀ = Q R`` (reduced QR in float64) with the signs chosen so that ``diag R > 0``; afterwards
    ``basis = Qᵀ`` and the old basis is ``Rᵀ Qᵀ``, so coefficients ``C`` of the old basis are ``C Rᵀ`` of the new.
    """
    q, r = torch.linalg.qr(basis.double().T)
    sign = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(r)
    q, r = q * sign, r * sign[:, None]
    if bool((torch.diagonal(r).abs() <= 1e-12 * r.abs().max().clamp_min(1e-300)).any()):
        raise FloatingPointError("a basis lost rank (its rows are linearly dependent); cannot re-orthonormalise it")
    basis.copy_(q.T.to(basis.dtype))
    return r


class SyntheticSet(nn.Module):
    """Learnable distilled set (see module docstring)."""

    def __init__(
        self,
        *,
        views: tuple[str, ...],
        image_size: int,
        channels: int,
        images: torch.Tensor | None = None,
        image_basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        targets: torch.Tensor | None = None,
        repr_basis: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        view_coeffs: dict[str, torch.Tensor] | None = None,
        approx: dict[str, ApproxNet] | None = None,
        basis_size: int | None = None,
        freeze_means: bool = False,
    ) -> None:
        """Build from tensors.

        Args:
            views: view names, identity first.
            image_size: full image side ``H = W``.
            channels: ``C``.
            images: pixel images ``(m, C, H, W)`` (exclusive with ``image_basis``).
            image_basis: ``(mean (P,), basis (U, P), coeffs (m, U))``.
            targets: pixel targets ``(m, D)`` (exclusive with ``repr_basis``).
            repr_basis: ``(mean (D,), basis (V, D), coeffs (m, V))``.
            view_coeffs: per non-identity view, its own coefficients/targets ``(m, c)``.
            approx: per non-identity view, an approximation network (instead of ``view_coeffs``).
            basis_size: side ``b`` of the image bases.
            freeze_means: keep ``μ_x``, ``μ_y`` fixed.
        """
        super().__init__()
        self.views = tuple(views)
        self.image_size, self.channels = image_size, channels
        self.basis_size = basis_size or image_size
        self.freeze_means = freeze_means
        if (images is None) == (image_basis is None):
            raise ValueError("give exactly one of images / image_basis")
        if (targets is None) == (repr_basis is None):
            raise ValueError("give exactly one of targets / repr_basis")
        self.images = nn.Parameter(images.clone()) if images is not None else None
        if image_basis is not None:
            mean, basis, coeffs = image_basis
            self.image_mean = nn.Parameter(mean.clone(), requires_grad=not freeze_means)
            self.image_basis = nn.Parameter(basis.clone())
            self.image_coeffs = nn.Parameter(coeffs.clone())
        self.targets = nn.Parameter(targets.clone()) if targets is not None else None
        if repr_basis is not None:
            mean, basis, coeffs = repr_basis
            self.repr_mean = nn.Parameter(mean.clone(), requires_grad=not freeze_means)
            self.repr_basis = nn.Parameter(basis.clone())
            self.repr_coeffs = nn.Parameter(coeffs.clone())
        self.view_coeffs = nn.ParameterDict({_key(v): nn.Parameter(c.clone()) for v, c in (view_coeffs or {}).items()})
        self.approx = nn.ModuleDict({_key(v): net for v, net in (approx or {}).items()})
        for view in self.views[1:]:
            if _key(view) not in self.view_coeffs and _key(view) not in self.approx:
                raise ValueError(f"view {view!r} needs coefficients or an approximation network")

    # -- sizes --------------------------------------------------------------------------------
    @property
    def has_image_basis(self) -> bool:
        """Images stored as bases and coefficients."""
        return self.images is None

    @property
    def has_repr_basis(self) -> bool:
        """Targets stored as bases and coefficients."""
        return self.targets is None

    @property
    def num_images(self) -> int:
        """``m``."""
        return int(self.image_coeffs.shape[0] if self.has_image_basis else self.images.shape[0])  # type: ignore[union-attr]

    # -- decoding -----------------------------------------------------------------------------
    def decode_images(self) -> torch.Tensor:
        """Identity-view images ``(m, C, H, W)`` in the stored space (normalised by default)."""
        if not self.has_image_basis:
            return self.images  # type: ignore[return-value]
        return decode_flat(self.image_mean + self.image_coeffs @ self.image_basis, self.channels, self.image_size)

    def identity_coeffs(self) -> torch.Tensor:
        """Identity-view target coefficients ``(m, c)`` (``c = V`` or ``D``)."""
        return self.repr_coeffs if self.has_repr_basis else self.targets  # type: ignore[return-value]

    def coeffs(self, view: str) -> torch.Tensor:
        """Target coefficients of ``view``: stored, or identity + approximation-network shift."""
        base = self.identity_coeffs()
        if view == "identity":
            return base
        key = _key(view)
        if key in self.approx:
            return base + self.approx[key](base)
        return self.view_coeffs[key]

    def decode_targets(self, coeffs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Targets ``(n, D)`` from coefficients, written into ``out`` when given (the same values bit for bit)."""
        if out is None:
            return self.repr_mean + coeffs @ self.repr_basis if self.has_repr_basis else coeffs
        if not self.has_repr_basis:
            return out.copy_(coeffs)
        return torch.matmul(coeffs, self.repr_basis, out=out).add_(self.repr_mean)

    def support(self, views: tuple[str, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All (image, target) pairs, view-major: ``(|A|·m, C, H, W)`` and ``(|A|·m, D)``."""
        views = views or self.views
        base = self.decode_images()
        xs = [apply_view(base, v) for v in views]
        ys = [self.decode_targets(self.coeffs(v)) for v in views]
        return torch.cat(xs), torch.cat(ys)

    @torch.no_grad()
    def rebuild(self, views: tuple[str, ...] | None = None, *,
                out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs of :meth:`support`, computed for expansion at memory speed (no gradients).

        Bilinear upsampling is linear, so ``Up(μ_x + C_x B_x) = Up(μ_x) + C_x Up(B_x)``: the bases are
        upsampled once (``U`` rows instead of ``m`` images) and the identity images come out of one matrix
        product written straight into the preallocated output; every other view is a fixed permutation of
        the pixels, gathered from it once. The result equals :meth:`support` up to float rounding (the
        order of the sums in the identity images differs; the views are exact permutations of them).

        Args:
            views: the views to rebuild (default: all, in the set's order).
            out: preallocated ``(images, targets)`` of the result's shapes (float32, contiguous) to write
                into, e.g. to re-expand into the same memory: fresh memory costs the operating system's
                page faults, about as much as the decoding itself for 100,000 pairs.
        """
        views = views or self.views
        m, c, s = self.num_images, self.channels, self.image_size
        first = self.decode_targets(self.coeffs(views[0]))
        shapes = ((len(views) * m, c, s, s), (len(views) * m, first.shape[1]))
        if out is not None:
            images, targets = out
            if ((tuple(images.shape), tuple(targets.shape)) != shapes
                    or not (images.is_contiguous() and targets.is_contiguous())
                    or {images.dtype, targets.dtype} != {first.dtype} or {images.device, targets.device} != {first.device}):
                raise ValueError(f"out= must be contiguous {first.dtype} tensors on {first.device} of shapes {shapes}, got "
                                 f"{tuple(images.shape)} {images.dtype} and {tuple(targets.shape)} {targets.dtype}")
        else:
            images, targets = first.new_empty(shapes[0]), first.new_empty(shapes[1])
        identity = images[:m] if views[0] == "identity" else first.new_empty((m, c, s, s))
        if self.has_image_basis:
            mean, basis = self.image_mean, self.image_basis
            if self.basis_size != s:
                def up(x: torch.Tensor) -> torch.Tensor:
                    small = x.reshape(-1, c, self.basis_size, self.basis_size)
                    return F.interpolate(small, size=(s, s), mode="bilinear", align_corners=False).reshape(x.shape[0], -1)

                mean, basis = up(mean[None])[0], up(basis)
            torch.addmm(mean, self.image_coeffs, basis, out=identity.view(m, -1))
        else:
            identity.copy_(self.images)  # type: ignore[arg-type]
        pixels = torch.arange(c * s * s, device=identity.device).view(1, c, s, s)
        flat = identity.view(m, -1)
        for i, view in enumerate(views):
            if view != "identity" or i:
                # a view is a fixed permutation of the pixels: one gather per view, straight into the output
                # (gather with a broadcast index runs on every thread; index_select on one here)
                perm = apply_view(pixels, view).reshape(1, -1).expand(m, -1)
                torch.gather(flat, 1, perm, out=images[i * m : (i + 1) * m].view(m, -1))
            rows = targets[i * m : (i + 1) * m]
            if i == 0:
                rows.copy_(first)
            else:
                self.decode_targets(self.coeffs(view), out=rows)
        return images, targets

    # -- re-orthonormalisation -----------------------------------------------------------------
    @torch.no_grad()
    def orthonormalise_(self) -> list[nn.Parameter]:
        """Make the rows of both bases orthonormal again, leaving every (image, target) pair unchanged.

        With ``Bᵀ = QR`` (the signs fixed so that ``diag R > 0``: a basis that is already orthonormal
        stays as it is), ``C B = (C Rᵀ) Qᵀ``, so the basis becomes ``Qᵀ`` and every coefficient matrix
        of that basis is multiplied by ``Rᵀ``. For the representation basis that covers the identity
        coefficients, every stored view's coefficients and the approximation networks (their input
        and output are coefficients: first layer ``W₁R⁻¹``, last layer ``R W₂`` and ``R b₂``). The
        arithmetic runs in float64. Returns the parameters whose values changed (an optimizer's moments
        for them no longer apply).
        """
        changed: list[nn.Parameter] = []
        if self.has_image_basis:
            r = _orthonormalise(self.image_basis)
            self.image_coeffs.copy_((self.image_coeffs.double() @ r.T).to(self.image_coeffs.dtype))
            changed += [self.image_basis, self.image_coeffs]
        if self.has_repr_basis:
            r = _orthonormalise(self.repr_basis)
            coeffs = [self.repr_coeffs, *self.view_coeffs.values()]
            for c in coeffs:
                c.copy_((c.double() @ r.T).to(c.dtype))
            changed += [self.repr_basis, *coeffs]
            for net in self.approx.values():
                first, last = net[0], net[2]
                first.weight.copy_(torch.linalg.solve_triangular(r, first.weight.double(), upper=True, left=False)
                                   .to(first.weight.dtype))
                last.weight.copy_((r @ last.weight.double()).to(last.weight.dtype))
                last.bias.copy_((r @ last.bias.double()).to(last.bias.dtype))
                changed += [first.weight, last.weight, last.bias]
        return changed

    # -- storage ------------------------------------------------------------------------------
    def stored_tensors(self) -> dict[str, torch.Tensor]:
        """The float tensors a bundle stores (keys of ``bundle.py``)."""
        out: dict[str, torch.Tensor] = {}
        if self.has_image_basis:
            out.update({IMAGE_BASIS: self.image_basis, IMAGE_MEAN: self.image_mean, IMAGE_COEFFS: self.image_coeffs})
        else:
            out[IMAGES] = self.images  # type: ignore[assignment]
        if self.has_repr_basis:
            out.update({REPR_BASIS: self.repr_basis, REPR_MEAN: self.repr_mean, REPR_COEFFS: self.repr_coeffs})
        else:
            out[TARGETS] = self.targets  # type: ignore[assignment]
        for view in self.views[1:]:
            key = _key(view)
            if key in self.approx:
                for name, t in self.approx[key].state_dict().items():
                    out[approx_key(view, name)] = t
            else:
                stored = view_coeffs_key(view) if self.has_repr_basis else view_targets_key(view)
                out[stored] = self.view_coeffs[key]
        return {k: v.detach().float().cpu() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], *, views: list[str], image_size: int, channels: int,
                     basis_size: int | None = None, freeze_means: bool = False) -> "SyntheticSet":
        """Rebuild a set from bundle tensors (inverse of :meth:`stored_tensors`)."""
        approx: dict[str, ApproxNet] = {}
        stored: dict[str, torch.Tensor] = {}
        for view in views[1:]:
            w0 = tensors.get(approx_keys(view)[0])
            if w0 is not None:
                net = ApproxNet(w0.shape[1], w0.shape[0])
                net.load_state_dict({n: tensors[approx_key(view, n)] for n in APPROX_PARAMS})
                approx[view] = net
            else:
                stored[view] = tensors.get(view_coeffs_key(view), tensors.get(view_targets_key(view)))  # type: ignore[assignment]
        ib = (tensors[IMAGE_MEAN], tensors[IMAGE_BASIS], tensors[IMAGE_COEFFS]) if IMAGE_BASIS in tensors else None
        rb = (tensors[REPR_MEAN], tensors[REPR_BASIS], tensors[REPR_COEFFS]) if REPR_BASIS in tensors else None
        return cls(views=tuple(views), image_size=image_size, channels=channels,
                   images=tensors.get(IMAGES) if ib is None else None, image_basis=ib,
                   targets=tensors.get(TARGETS) if rb is None else None, repr_basis=rb,
                   view_coeffs=stored, approx=approx, basis_size=basis_size, freeze_means=freeze_means)
