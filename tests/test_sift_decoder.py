"""The SIFT decoder: exactness (eq. 4.14, Lemma 8/10), linearity, smoothness (4.1.3C vs 4.1.3B),
differentiability (4.2.4), dtype/device, errors."""

import numpy as np
import pytest
import torch

from ablation_paths.sift import SiftParams, decompose


def _natural(name: str = "astronaut", size: int = 64, dtype=torch.float32) -> torch.Tensor:
    from skimage import data, transform

    img = transform.resize(getattr(data, name)(), (size, size), anti_aliasing=True)
    return torch.from_numpy(img).permute(2, 0, 1).to(dtype).contiguous()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return _natural("chelsea", 72)


@pytest.fixture(scope="module")
def dec(image):
    return decompose(image)


def test_all_ones_reproduces_the_image(image, dec):
    assert dec.num_features > 10
    assert _rel(dec.decode(torch.ones(dec.num_features)), image) < 1e-3  # default cutoff
    exact = decompose(image, cutoff=0.0)
    assert _rel(exact.decode(torch.ones(exact.num_features)), image) < 1e-5
    assert exact.nnz > dec.nnz  # the cutoff buys sparsity


def test_all_ones_reproduces_in_float64_and_greyscale():
    x = _natural("coffee", 48, torch.float64)
    for img in (x, x.mean(0, keepdim=True)):
        d = decompose(img)
        out = d.decode(torch.ones(2, d.num_features, dtype=torch.float64))
        assert out.dtype == torch.float64 and out.shape == (2, *img.shape)
        assert _rel(out[1], img) < 1e-10


def test_zero_gains_give_zero_and_decoding_is_linear(image, dec):
    k = dec.num_features
    assert dec.decode(torch.zeros(k)).abs().max().item() == 0.0
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, k, generator=g), torch.randn(5, k, generator=g)
    lhs = dec.decode(2.0 * a - 0.5 * b)
    rhs = 2.0 * dec.decode(a) - 0.5 * dec.decode(b)
    assert (lhs - rhs).abs().max().item() < 1e-5
    # sum of all isolated features = the image
    feats = dec.features(list(range(k)))
    assert _rel(feats.sum(0), image) < 1e-3
    # batched and single decoding agree
    torch.testing.assert_close(dec.decode(a)[3], dec.decode(a[3]))


def _grad_energy(y: torch.Tensor) -> torch.Tensor:
    dy = y[..., 1:, :] - y[..., :-1, :]
    dx = y[..., :, 1:] - y[..., :, :-1]
    return (dy**2).sum((-1, -2, -3)) + (dx**2).sum((-1, -2, -3))


@pytest.mark.parametrize("name", ["astronaut", "smooth"])
def test_single_features_have_no_hard_cell_edges(name):
    if name == "smooth":  # low-frequency image: any cell edge would dominate the gradient energy
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
        img = torch.stack([0.3 + 0.4 * xx, 0.5 + 0.3 * torch.sin(4 * yy), 0.2 + 0.5 * xx * yy])
        g = torch.Generator().manual_seed(3)
        for _ in range(8):  # smooth blobs of several sizes make the keypoints
            cx, cy = torch.rand(2, generator=g) * 0.8 + 0.1
            s = 0.03 + 0.07 * torch.rand((), generator=g)
            sign = 1 if torch.rand((), generator=g) > 0.5 else -1
            amp = 0.5 * sign * (torch.rand(3, 1, 1, generator=g) * 0.5 + 0.5)
            img = img + amp * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        img = img.double()
    else:
        img = _natural(name, 64, torch.float64)
    smooth = decompose(img)
    hard = decompose(img, smooth_cells=False)
    assert smooth.num_features == hard.num_features > 5  # same keypoints, different cells
    idx = list(range(smooth.num_features))
    es, eh = _grad_energy(smooth.features(idx)), _grad_energy(hard.features(idx))
    # every feature is at most as rough as its hard-partition version, and in total much smoother
    assert torch.all(es <= eh * 1.05)
    ratio = (es.sum() / eh.sum()).item()
    # measured 0.77 (astronaut) and 0.81 (smooth; 0.43 with the storage-dependent keypoints, whose
    # largest keypoint had sigma 4.9 instead of 5.5 - one keypoint decides who owns the coarse
    # layers of this 9-keypoint image)
    assert ratio < 0.9
    # the hard partition is still an exact decomposition (the roughness is not a reconstruction bug)
    assert _rel(hard.decode(torch.ones(hard.num_features, dtype=img.dtype)), img) < 1e-10


def test_gradcheck_through_the_sparse_decoder():
    x = _natural("astronaut", 20, torch.float64)
    d = decompose(x, contrast_threshold=0.01, max_keypoints=6)
    k = d.num_features
    gains = torch.rand(2, k, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(d.decode, (gains,), fast_mode=True)
    # the backward pass applies the transpose: <D g, y> = <g, D^T y>
    y = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    (d.decode(gains) * y).sum().backward()
    assert gains.grad is not None
    dense = d.features(list(range(k))).reshape(k, -1)
    torch.testing.assert_close(gains.grad, y.reshape(2, -1) @ dense.T)


def test_mass_weights_are_feature_norms(dec):
    w = dec.mass_weights()
    assert w.shape == (dec.num_features,) and torch.all(w >= 0)
    feats = dec.features([0, 3])
    torch.testing.assert_close(w[[0, 3]], feats.flatten(1).norm(dim=1))
    torch.testing.assert_close(dec.mass_weights(normalize=True).sum(), torch.tensor(1.0))


def test_mass_weights_without_the_residual(dec):
    # reference: a decomposition of the same image whose residual band is removed; the residual
    # layer's decoder part is T_res * chi_res, so removing it from every feature's image is the
    # same as decoding the feature with the residual band zeroed
    from ablation_paths.sift.scale_space import scale_space

    space = scale_space(dec.image)
    res_img = space.bands[-1]
    w = dec.mass_weights(residual=False)
    idx = [0, 3]
    full = dec.features(idx)
    part = dec._decode_residual(idx)
    torch.testing.assert_close(w[idx], (full - part).flatten(1).norm(dim=1))
    # all features' residual parts sum to the (upsampled) residual band: the mean colour
    total = dec._decode_residual(list(range(dec.num_features))).sum(0)
    from ablation_paths.sift.scale_space import upsample_levels

    zeros = [torch.zeros(res_img.shape[0], *lv.size, dtype=res_img.dtype) for lv in space.levels]
    want = upsample_levels(zeros[:-1] + [res_img], [lv.size for lv in space.levels])
    torch.testing.assert_close(total, want.to(total.dtype), rtol=1e-4, atol=1e-5)
    assert float(w.max() / w.sum()) < float(dec.mass_weights().max() / dec.mass_weights().sum())


def test_heatmaps(dec):
    k = dec.num_features
    h, w = dec.image_size
    ones = dec.voronoi_heatmap(torch.ones(k))
    assert ones.shape == (h, w)
    assert abs(ones.mean().item() - 1) < 1e-4  # default: local-energy density of mean 1
    uni = decompose(dec.image, field_weights="uniform").voronoi_heatmap(torch.ones(k))
    assert (uni - 1).abs().max().item() < 1e-5  # partition of unity of the field (eq. 4.46)
    v = torch.zeros(k)
    v[0] = 1.0
    single = dec.voronoi_heatmap(v)
    kx, ky = dec.keypoints.x[0], dec.keypoints.y[0]
    assert single.min() >= -1e-6 and single[round(ky), round(kx)] > 0
    assert dec.voronoi_heatmap(torch.rand(4, k)).shape == (4, h, w)
    c = dec.contrast_heatmap(torch.ones(k))
    assert c.shape == (h, w) and c.min() >= 0
    path = torch.linspace(0, 1, 5)[:, None].expand(5, k)
    cp = dec.contrast_heatmap(path)
    assert cp.shape == (5, h, w)
    # contrast is 1-homogeneous: scaling all gains scales the map
    torch.testing.assert_close(cp[2], 0.5 * cp[4], atol=1e-5, rtol=1e-4)
    assert cp[0].abs().max() == 0


def test_input_validation(dec):
    k = dec.num_features
    with pytest.raises(ValueError, match="K ="):
        dec.decode(torch.ones(3, k + 1))
    with pytest.raises(ValueError, match="NaN"):
        dec.decode(torch.full((k,), float("nan")))
    with pytest.raises(ValueError, match=r"\[3, H, W\] or \[1, H, W\]"):
        decompose(torch.rand(2, 16, 16))
    with pytest.raises(ValueError, match="floating"):
        decompose(torch.ones(3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        decompose(torch.full((3, 16, 16), float("nan")))
    with pytest.raises(TypeError):
        decompose(torch.rand(3, 16, 16), not_a_param=1)
    assert SiftParams().cutoff > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decoding_matches_cpu():
    x = _natural("astronaut", 48)
    cpu = decompose(x)
    gpu = decompose(x.cuda())
    assert gpu.num_features == cpu.num_features
    g = torch.rand(4, cpu.num_features)
    out = gpu.decode(g.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), cpu.decode(g), atol=1e-5, rtol=1e-4)
    gg = g.cuda().requires_grad_(True)
    gpu.decode(gg).sum().backward()
    assert gg.grad is not None and gg.grad.device.type == "cuda"


def test_gains_given_as_lists(dec):
    k = dec.num_features
    gains = [0.25 * (j % 4) for j in range(k)]
    torch.testing.assert_close(dec.decode(gains), dec.decode(torch.tensor(gains)))
    torch.testing.assert_close(dec.voronoi_heatmap(gains), dec.voronoi_heatmap(torch.tensor(gains)))


def test_range_check_edges():
    """Images within ``RANGE_TOLERANCE`` of ``[0, 1]`` (edges included) are taken as they are;
    a ``[0, 255]`` image warns, naming what was done."""
    import warnings

    from ablation_paths.diagnostics import InputWarning
    from ablation_paths.sift.decomposition import RANGE_TOLERANCE

    x = _natural("coffee", 24, torch.float64).mean(0, keepdim=True)
    edge = (x - x.min()) / (x.max() - x.min()) * (1 + 2 * RANGE_TOLERANCE) - RANGE_TOLERANCE
    assert float(edge.min()) == -RANGE_TOLERANCE
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        d_edge = decompose(edge, max_keypoints=4)
    assert d_edge.num_features >= 1
    with pytest.warns(InputWarning, match=r"not \[0, 1\].*divided by 255"):
        decompose(x * 255, max_keypoints=4)


def test_residual_part_with_five_storage_levels():
    """With more storage levels than the default three, the residual layer's part of every
    feature still sums to the residual band upsampled to the image (the mean colour)."""
    from ablation_paths.sift.scale_space import scale_space, upsample_levels

    x = _natural("coffee", 48, torch.float64).mean(0, keepdim=True)
    sigmas = (1.5, 3.0, 6.0, 12.0)
    d = decompose(x, level_sigmas=sigmas, max_keypoints=6)
    space = scale_space(x, level_sigmas=sigmas)
    assert len(space.levels) == 5
    total = d._decode_residual(list(range(d.num_features))).sum(0)
    zeros = [torch.zeros(1, *lv.size, dtype=x.dtype) for lv in space.levels]
    want = upsample_levels(zeros[:-1] + [space.bands[-1]], [lv.size for lv in space.levels])
    torch.testing.assert_close(total, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("sizes", [[(6, 8), (3, 4), (1, 2)], [(5, 7), (5, 7)], [(4, 6)]])
def test_decode_levels_equals_dense_matrices_and_bilinear_upsampling(sizes):
    # reference: dense Z^rho @ theta per level, reshaped to [B, C, h, w] and added coarse to
    # fine with torch's bilinear upsampling (align_corners=False); levels of equal size add
    # directly. Gradient: the transposes of the same dense matrices.
    import scipy.sparse as sp
    import torch.nn.functional as F

    from ablation_paths.sift.decoder import SparseLevel, decode_levels, to_torch_csr

    rng = np.random.default_rng(len(sizes))
    k, c, b = 5, 2, 3
    levels, dense = [], []
    for size in sizes:
        m = sp.random(c * size[0] * size[1], k, density=0.4, random_state=rng, format="csr")
        dense.append(torch.from_numpy(m.toarray()))
        levels.append(
            SparseLevel(
                factor=1,
                size=size,
                channels=c,
                matrix=to_torch_csr(m, torch.float64, "cpu"),
                matrix_t=to_torch_csr(m.T, torch.float64, "cpu"),
            )
        )
    gains = torch.from_numpy(rng.normal(size=(b, k))).requires_grad_(True)
    out = decode_levels(levels, gains, sizes[0])
    want = None
    for z, size in zip(dense[::-1], sizes[::-1], strict=True):
        y = (z @ gains.detach().T).T.reshape(b, c, *size)
        if want is not None and tuple(want.shape[-2:]) != size:
            want = F.interpolate(want, size=size, mode="bilinear", align_corners=False)
        want = y if want is None else want + y
    assert out.shape == (b, c, *sizes[0]) and out.is_contiguous()
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    weights = torch.from_numpy(rng.normal(size=tuple(out.shape)))
    (out * weights).sum().backward()
    ref = gains.detach().clone().requires_grad_(True)
    want2 = None
    for z, size in zip(dense[::-1], sizes[::-1], strict=True):
        y = (z @ ref.T).T.reshape(b, c, *size)
        if want2 is not None and tuple(want2.shape[-2:]) != size:
            want2 = F.interpolate(want2, size=size, mode="bilinear", align_corners=False)
        want2 = y if want2 is None else want2 + y
    (want2 * weights).sum().backward()
    torch.testing.assert_close(gains.grad, ref.grad, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="image size"):
        decode_levels(levels, gains, (sizes[0][0] + 1, sizes[0][1]))


@pytest.mark.parametrize("smooth", [False, True])
def test_residual_parts_equal_brute_force_cells_on_a_non_square_image(smooth):
    # every feature's residual-layer part, D_res(e_j) = upsample(T_res * chi_j), against cells
    # built from scratch: owners by the brute-force argmin of eq. 4.18 (|r - r_j|^2 +
    # eta^2 (sigma - sigma_j)^2) on the coarsest grid, blurred per axis with SciPy
    # (sigma * h / H rows, sigma * w / W columns; eq. 4.27) or hard (4.1.3B); cutoff 0
    from scipy.ndimage import gaussian_filter

    from ablation_paths.sift.scale_space import level_coords, scale_space, upsample_levels

    x = _natural("coffee", 64, torch.float64)[:, 8:56, :]  # 48 x 64
    hh, ww = x.shape[-2:]
    d = decompose(x, cutoff=0.0, smooth_cells=smooth, eta=3.0)
    space = scale_space(x)
    assert [lv.factor for lv in d.levels] == [lv.factor for lv in space.levels] == [1, 2, 4]
    assert d.n_voxels == sum(lv.size[0] * lv.size[1] * len(lv.layers) for lv in space.levels)
    top = space.levels[-1]
    sig = space.layers[-1].sigma
    ys, xs = level_coords(top.size, (hh, ww))
    gy, gx = np.meshgrid(ys.numpy(), xs.numpy(), indexing="ij")
    kp = d.keypoints
    d2 = (gx[..., None] - kp.x) ** 2 + (gy[..., None] - kp.y) ** 2 + 9.0 * (sig - kp.sigma) ** 2
    owner = d2.argmin(-1)
    idx = list(range(d.num_features))
    got = d._decode_residual(idx)
    zeros = [torch.zeros(3, *lv.size, dtype=x.dtype) for lv in space.levels[:-1]]
    blur = (sig * top.size[0] / hh, sig * top.size[1] / ww)
    for j in idx:
        chi = (owner == j).astype(float)
        if smooth:
            chi = gaussian_filter(chi, blur, mode="reflect", truncate=4.0)
        part = space.bands[-1] * torch.from_numpy(chi)
        want = upsample_levels([*zeros, part], [lv.size for lv in space.levels])
        torch.testing.assert_close(got[j], want, rtol=1e-9, atol=1e-12)


def test_sigma_max_caps_the_layers_and_the_detected_scales(image):
    # sigma_max = 6 px: the residual starts at the first sample above it (0.8 * 2^3 = 6.4), so
    # the largest-scale keypoint of the default grid (sigma about 5.4 on this image) is gone
    from ablation_paths.sift import find_keypoints

    full = find_keypoints(image)
    capped = find_keypoints(image, sigma_max=6.0)
    assert full.sigma.max() > 5.0 > capped.sigma.max()
    d = decompose(image, sigma_max=6.0)
    np.testing.assert_array_equal(d.keypoints.as_array(), capped.as_array())
    assert d.layers[-1].sigma_lo == pytest.approx(6.4)


def test_contrast_heatmap_defaults_are_table_4_2(dec):
    # eq. 4.48 with sigma_HP = 5 and sigma_LP = 8 (Table 4.2), recomputed with SciPy on the
    # decoded images: |x - gamma_5 * x| (Euclidean over colours), then gamma_8
    from scipy.ndimage import gaussian_filter

    g = torch.linspace(0.0, 1.0, dec.num_features)[None].repeat(2, 1)
    g[1] = 1 - g[1]
    x = dec.decode(g).double().numpy()
    high = x - gaussian_filter(x, (0, 0, 5.0, 5.0), mode="reflect", truncate=4.0)
    want = gaussian_filter(np.linalg.norm(high, axis=1), (0, 8.0, 8.0), mode="reflect")
    got = dec.contrast_heatmap(g)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-4, atol=1e-6)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Dense ``[n_out, n_in]`` linear resampling, written out from the align_corners=False rule:
    output sample ``i`` sits at input coordinate ``(i + 0.5) n_in / n_out - 0.5`` (clamped at
    0), between the two nearest input samples (the last one repeated at the edge)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(np.floor(src)), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        t = src - lo
        m[i, lo] += 1 - t
        m[i, hi] += t
    return m


def _reference_decode(dense: list[np.ndarray], sizes, c: int, gains: np.ndarray) -> np.ndarray:
    """Slow, obviously correct eq. 4.41 in float64: per level ``Z^rho theta`` reshaped to
    ``[B, C, h, w]``, then coarse to fine ``acc = R_y acc R_x^T + level`` with explicit
    bilinear matrices."""
    acc = None
    for z, (h, w) in zip(dense[::-1], sizes[::-1], strict=True):
        y = (z @ gains.T).T.reshape(-1, c, h, w)
        if acc is not None:
            ry = _bilinear_matrix(acc.shape[-2], h)
            rx = _bilinear_matrix(acc.shape[-1], w)
            acc = np.einsum("yi,bcij,xj->bcyx", ry, acc, rx)
        acc = y if acc is None else acc + y
    assert acc is not None
    return acc


def test_explicit_bilinear_matrix_is_torchs_upsampling():
    import torch.nn.functional as F

    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 4, 5)))
    for size in [(8, 10), (7, 9), (9, 13), (4, 5), (5, 5)]:
        want = F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0]
        got = _bilinear_matrix(4, size[0]) @ x[0, 0].numpy() @ _bilinear_matrix(5, size[1]).T
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kernel", [True, False])
@pytest.mark.parametrize("band", [1, 40, 1 << 18])
@pytest.mark.parametrize(
    "sizes",
    [[(6, 8), (3, 4), (1, 2)], [(7, 9), (4, 5), (2, 3)], [(9, 5), (9, 5), (4, 3)], [(5, 7)]],
)
def test_banded_decoder_equals_a_dense_reference(sizes, band, kernel, monkeypatch):
    # the banded CPU decoder (any band height, including one row per band and a partial last
    # band; SciPy's row-range kernels or the public sliced-matrix fallback) against dense
    # matrices with explicit bilinear upsampling: values in float64 and float32, and the
    # gradient (dense transposes) in float64
    import scipy.sparse as sp

    from ablation_paths.sift import decoder
    from ablation_paths.sift.decoder import SparseLevel, decode_levels, to_torch_csr

    monkeypatch.setattr(decoder, "_BAND_ELEMENTS", band)
    if not kernel:
        monkeypatch.setattr(decoder, "_st", None)
    rng = np.random.default_rng(len(sizes) + sizes[0][0])
    k, c, b = 6, 3, 4
    mats = [sp.random(c * h * w, k, density=0.5, random_state=rng, format="csr") for h, w in sizes]
    dense = [m.toarray() for m in mats]
    gains = rng.normal(size=(b, k))
    want = _reference_decode(dense, sizes, c, gains)
    weights = rng.normal(size=want.shape)
    for dtype, tol in [(torch.float64, 1e-12), (torch.float32, 1e-6)]:
        levels = [
            SparseLevel(1, s, c, to_torch_csr(m, dtype, "cpu"), to_torch_csr(m.T, dtype, "cpu"))
            for m, s in zip(mats, sizes, strict=True)
        ]
        g = torch.tensor(gains, dtype=dtype, requires_grad=True)
        out = decode_levels(levels, g, sizes[0])
        assert out.shape == (b, c, *sizes[0]) and out.is_contiguous() and out.dtype == dtype
        scale = np.abs(want).max()
        np.testing.assert_allclose(out.detach().numpy(), want, rtol=0, atol=tol * scale)
        (out * torch.tensor(weights, dtype=dtype)).sum().backward()
        # d<D g, w>/dg = D^T w, D as the dense matrix of the reference (its columns: D(e_j))
        d_cols = _reference_decode(dense, sizes, c, np.eye(k)).reshape(k, -1)
        want_grad = weights.reshape(b, -1) @ d_cols.T
        assert g.grad is not None
        np.testing.assert_allclose(
            g.grad.numpy(), want_grad, rtol=0, atol=tol * np.abs(want_grad).max()
        )
    levels64 = [
        SparseLevel(
            1, s, c, to_torch_csr(m, torch.float64, "cpu"), to_torch_csr(m.T, torch.float64, "cpu")
        )
        for m, s in zip(mats, sizes, strict=True)
    ]
    g64 = torch.tensor(gains[:2], requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: decode_levels(levels64, t, sizes[0]), (g64,))
    with pytest.raises(ValueError, match="share dtype"):
        decode_levels(levels64, g64.detach().float(), sizes[0])


@pytest.mark.parametrize("shape", [(40, 56), (97, 131), (64, 64)])
def test_banded_decoder_equals_the_whole_image_route(shape, monkeypatch):
    # on real decompositions (float32, random gains): the banded CPU route against the route
    # that sums all levels at full size and transposes once (the CPU code before the banded
    # finest level; still the route on other devices)
    from skimage import data, transform

    from ablation_paths.sift import decoder

    img = transform.resize(data.astronaut(), shape, anti_aliasing=True)
    x = torch.from_numpy(img).permute(2, 0, 1).float().contiguous()
    d = decompose(x)
    gains = torch.rand(5, d.num_features, generator=torch.Generator().manual_seed(1)) * 2 - 0.5
    want = decoder._decode_whole(d.levels, gains.T.contiguous())
    for band in [1 << 18, 3 * shape[1] * 5]:  # one band per channel; bands of 3 rows
        monkeypatch.setattr(decoder, "_BAND_ELEMENTS", band)
        got = d.decode(gains)
        assert _rel(got, want) < 1e-6
        assert (got - want).abs().max() <= 2e-6 * want.abs().max()
    assert _rel(d.decode(torch.ones(d.num_features)), x) < 3e-7
