"""Painting the tissue-code map of an anatomy on a CT grid, in painter's order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from livermets.datasets.synth.anatomy import _Anatomy, _Body
from livermets.datasets.synth.geometry import Mask, _Box, _Grid
from livermets.datasets.synth.liver import _liver_inside
from livermets.datasets.synth.protocols import Tissue


def _paint(tissue: npt.NDArray[np.uint8], box: _Box, mask: Mask, code: Tissue,
           only: Sequence[Tissue] | None = None) -> None:
    """Set `code` where `mask` (broadcast to the box) is true, optionally only over `only`."""
    view = tissue[box.index]
    mask = np.broadcast_to(mask, view.shape)
    if only is not None:
        allowed = np.zeros(256, dtype=bool)
        allowed[list(only)] = True
        mask = mask & allowed[view]
    view[mask] = code


def _paint_body(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Table, skin and subcutaneous fat, abdominal-wall muscle, visceral fat."""
    box = grid.full()
    body = anatomy.body
    table_top = np.float32(grid.pose.translation_mm[1] + body.layer(2)[2] * 1.0 + 3.0)
    lateral = np.abs(box.px) < 230.0  # table width follows the patient only roughly
    shell = (box.wy >= table_top) & (box.wy < table_top + 3.0)
    shell |= (box.wy >= table_top + 22.0) & (box.wy < table_top + 25.0)
    _paint(tissue, box, lateral & (box.wy >= table_top) & (box.wy < table_top + 25.0),
           Tissue.TABLE_FOAM)
    _paint(tissue, box, lateral & shell, Tissue.TABLE)
    taper = _Body.taper(box.pz)
    for depth, code in ((2, Tissue.FAT), (1, Tissue.MUSCLE), (0, Tissue.VISCERAL_FAT)):
        _paint(tissue, box, body.radius(box.px, box.py, depth) <= taper, code)


def _paint_thorax(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Lung bases above the diaphragm, the diaphragm itself and the bottom of the heart."""
    c = anatomy.body.layer(0)
    box = grid.box((-c[0], -c[1], -110.0), (c[0], c[2], 200.0))
    if box is None:
        return
    cavity = anatomy.body.radius(box.px, box.py, 0) <= _Body.taper(box.pz)
    dome = anatomy.dome.height(box.px, box.py)
    _paint(tissue, box, cavity & (box.pz > dome - 5.0), Tissue.MUSCLE)
    above = cavity & (box.pz > dome + 1.0)
    _paint(tissue, box, above, Tissue.LUNG)
    heart = anatomy.heart.q(box.px, box.py, box.pz)
    _paint(tissue, box, above & (heart <= 1.0), Tissue.MYOCARDIUM)
    _paint(tissue, box, above & (heart <= 0.7), Tissue.BLOOD)


def _paint_bowel(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Colon (gas mottled with stool) and small-bowel loops (fluid, little gas), each with an
    enhancing 2.5 mm wall, in the abdominal cavity below the diaphragm."""
    lows, highs = zip(*(tube.bounds() for tube in anatomy.colon + anatomy.small_bowel),
                      strict=True)
    region_box = grid.box(np.min(lows, axis=0), np.max(highs, axis=0))
    if region_box is None:
        return
    gas_field = anatomy.bowel_gas(region_box.px, region_box.py, region_box.pz)  # one pass
    for tubes, gas_level in ((anatomy.colon, 0.35), (anatomy.small_bowel, 1.4)):
        for tube in tubes:
            box = grid.box(*tube.bounds())
            if box is None:
                continue
            within = tuple(slice(a.start - r.start, a.stop - r.start)
                           for a, r in zip(box.index, region_box.index, strict=True))
            region = anatomy.body.radius(box.px, box.py, 0) <= _Body.taper(box.pz) - 0.03
            region = region & (box.pz < anatomy.dome.height(box.px, box.py) - 30.0)
            distance2 = tube.distance2(box.px, box.py, box.pz)
            _paint(tissue, box, region & (distance2 <= tube.radius**2), Tissue.BOWEL_WALL,
                   (Tissue.VISCERAL_FAT,))
            lumen = region & (distance2 <= (tube.radius - 2.5) ** 2)
            _paint(tissue, box, lumen, Tissue.BOWEL_CONTENT,
                   (Tissue.VISCERAL_FAT, Tissue.BOWEL_WALL))
            gas = gas_field[within] > gas_level
            _paint(tissue, box, lumen & gas, Tissue.GAS, (Tissue.BOWEL_CONTENT,))


def _paint_spine(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Psoas and paraspinal muscles, vertebral bodies with discs, canal, posterior elements."""
    s = anatomy.scale
    vx, vy, half = anatomy.vertebra
    box = grid.box((-80.0 * s, vy - 40.0 * s, -400.0), (80.0 * s, vy + 80.0 * s, 200.0))
    if box is None:
        return
    px, py, pz = box.px, box.py, box.pz
    wall = anatomy.body.radius(px, py, 1) <= _Body.taper(pz)
    ax, ay, amax = anatomy.psoas
    psoas_r = np.clip((-pz - 95.0 * s) / (70.0 * s), 0.0, 1.0) * amax
    for side in (-1.0, 1.0):
        _paint(tissue, box, (px - side * ax) ** 2 + ((py - ay) / 1.15) ** 2 <= psoas_r**2,
               Tissue.MUSCLE)
        paraspinal = ((px - side * 30.0 * s) / (25.0 * s)) ** 2 + ((py - vy - 47.0 * s)
                                                                  / (21.0 * s)) ** 2
        _paint(tissue, box, (paraspinal <= 1.0) & wall, Tissue.MUSCLE)
    phase = np.mod(pz - anatomy.disc_phase, 34.0)  # mm within one vertebra + disc
    disc = phase < 8.0
    vb = ((px - vx) / half) ** 2 + ((py - vy) / (0.8 * half)) ** 2
    vb_inner = ((px - vx) / (half - 2.5)) ** 2 + ((py - vy) / (0.8 * half - 2.5)) ** 2
    _paint(tissue, box, (vb <= 1.0) & ~disc, Tissue.CORTICAL_BONE)
    _paint(tissue, box, (vb_inner <= 1.0) & ~disc, Tissue.MARROW)
    _paint(tissue, box, (vb <= 1.0) & disc, Tissue.DISC)
    canal_y = vy + 0.8 * half + 11.0 * s
    canal = (px - vx) ** 2 + (py - canal_y) ** 2
    arch = (canal <= (15.0 * s) ** 2) & (py > canal_y - 6.0 * s)
    spinous = ((px - vx) / (4.5 * s)) ** 2 + ((py - canal_y - 28.0 * s) / (17.0 * s)) ** 2 <= 1
    transverse = (((np.abs(px - vx) - 22.0 * s) / (13.0 * s)) ** 2
                  + ((py - canal_y + 2.0 * s) / (4.5 * s)) ** 2 <= 1.0)
    _paint(tissue, box, arch & (phase > 9.0), Tissue.CORTICAL_BONE)
    _paint(tissue, box, spinous & (phase > 12.0) & (phase < 30.0), Tissue.CORTICAL_BONE)
    _paint(tissue, box, transverse & (phase > 17.0) & (phase < 25.0), Tissue.CORTICAL_BONE)
    _paint(tissue, box, canal <= (8.5 * s) ** 2, Tissue.CSF)


def _paint_ribs(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Lower ribs in the body wall: oblique bands that descend from the spine to the front,
    ending anteriorly in costal cartilage (lower ribs end laterally)."""
    c = anatomy.body.layer(1)
    top = max(rib[0] for rib in anatomy.ribs) + 10.0
    bottom = min(rib[0] - rib[1] * rib[2] for rib in anatomy.ribs) - 10.0
    box = grid.box((-c[0], -c[1], bottom), (c[0], c[2], top))
    if box is None:
        return
    radius = anatomy.body.radius(box.px, box.py, 0)[0]
    band = np.flatnonzero((radius > 0.95) & (radius < 1.12))
    if band.size == 0:
        return
    angle = np.arctan2(box.px[0].ravel()[band], box.py[0].ravel()[band])  # 0 = straight back
    reach = np.abs(angle) - 0.38
    r = radius.ravel()[band][None, :]
    taper = _Body.taper(box.pz).reshape(-1, 1)
    ring = (r > taper * 1.015) & (r < taper * 1.06)
    pz = box.pz.reshape(-1, 1)
    rows, cols = np.unravel_index(band, radius.shape)
    view = tissue[box.index]
    values = view[:, rows, cols]
    for z_back, slope, end in anatomy.ribs:
        centre = z_back - slope * reach
        rib = ring & (np.abs(pz - centre[None, :]) < 3.5) & (reach > 0)[None, :]
        rib &= (np.abs(angle) < end)[None, :]
        cartilage = rib & (np.abs(angle) > 2.25)[None, :]
        values[rib & ~cartilage] = Tissue.RIB
        values[cartilage] = Tissue.CARTILAGE
    view[:, rows, cols] = values


def _paint_organs(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Kidneys, great vessels, pancreas, stomach, spleen."""
    for kidney in anatomy.kidneys:
        box = grid.box(*kidney.shell.bounds(pad=1.0))
        if box is None:
            continue
        q = kidney.shell.q(box.px, box.py, box.pz)
        inner = 1.0 - kidney.cortex_mm / min(kidney.shell.semi)
        _paint(tissue, box, q <= 1.0, Tissue.KIDNEY_CORTEX)
        _paint(tissue, box, q <= inner**2, Tissue.KIDNEY_MEDULLA)
        _paint(tissue, box, kidney.sinus.inside(box), Tissue.RENAL_SINUS)
        _paint(tissue, box, kidney.pelvis.inside(box), Tissue.URINE)
    box = grid.box((-60.0, -60.0, -400.0), (60.0, 60.0, 60.0))
    if box is not None:
        for (x, y, r), code, top in ((anatomy.aorta, Tissue.AORTA, 60.0),
                                     (anatomy.ivc, Tissue.IVC, 30.0)):
            ellipse = ((box.px - x) / r) ** 2 + ((box.py - y) / (0.8 * r if code == Tissue.IVC
                                                               else r)) ** 2 <= 1.0
            _paint(tissue, box, ellipse & (box.pz < top), code)
        for (x, y, r), code in zip(anatomy.mesenteric, (Tissue.PORTAL, Tissue.AORTA),
                                   strict=True):
            disc = (box.px - x) ** 2 + (box.py - y) ** 2 <= r * r
            _paint(tissue, box, disc & (box.pz < -108.0 * anatomy.scale), code)
    for tubes, code in ((anatomy.pancreas, Tissue.PANCREAS),
                        (anatomy.portal_outside, Tissue.PORTAL)):
        for tube in tubes:
            box = grid.box(*tube.bounds())
            if box is not None:
                _paint(tissue, box, tube.distance2(box.px, box.py, box.pz) <= tube.radius**2,
                       code)
    _paint_stomach(tissue, grid, anatomy)
    box = grid.box(*anatomy.spleen.bounds(pad=1.0))
    if box is not None:
        spleen = anatomy.spleen.inside(box) & ~anatomy.spleen_hilum.inside(box)
        spleen &= box.pz < anatomy.dome.height(box.px, box.py) - 5.0
        spleen &= anatomy.body.radius(box.px, box.py, 0) <= _Body.taper(box.pz) - 0.02
        _paint(tissue, box, spleen, Tissue.SPLEEN)


def _paint_stomach(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Stomach: enhancing wall, fluid, and gas above an air-fluid level (anterior, supine)."""
    stomach = anatomy.stomach
    box = grid.box(*stomach.bounds(pad=1.0))
    if box is None:
        return
    q = stomach.q(box.px, box.py, box.pz)
    inner = (1.0 - 5.0 / min(stomach.semi)) ** 2
    below = box.pz < anatomy.dome.height(box.px, box.py) - 5.0
    _paint(tissue, box, (q <= 1.0) & below, Tissue.STOMACH_WALL)
    _paint(tissue, box, (q <= inner) & below, Tissue.STOMACH_FLUID)
    level = np.float32(stomach.centre[1] - 0.35 * stomach.semi[1])
    _paint(tissue, box, (q <= inner) & below & (box.py < level), Tissue.GAS)


def _paint_liver(tissue: npt.NDArray[np.uint8], grid: _Grid, anatomy: _Anatomy) -> None:
    """Liver parenchyma, gallbladder, intrahepatic IVC and the vein trees inside the liver."""
    box = grid.box(*anatomy.liver.bounds())
    if box is not None:
        _paint(tissue, box, _liver_inside(anatomy, box.px, box.py, box.pz), Tissue.LIVER)
    gallbladder = grid.box(*anatomy.gallbladder.bounds(pad=1.0))
    if gallbladder is not None:
        below = gallbladder.pz < -40.0
        _paint(tissue, gallbladder, anatomy.gallbladder.inside(gallbladder) & below,
               Tissue.GALLBLADDER)
    for tube, code in anatomy.vessels:
        vessel = grid.box(*tube.bounds())
        if vessel is not None:
            inside = tube.distance2(vessel.px, vessel.py, vessel.pz) <= tube.radius**2
            _paint(tissue, vessel, inside, code, (Tissue.LIVER,))


def _render_tissue(anatomy: _Anatomy, grid: _Grid) -> npt.NDArray[np.uint8]:
    """The tissue code map (z, y, x) of `anatomy` on `grid` (painter's order)."""
    tissue = np.zeros(grid.geometry.shape, dtype=np.uint8)
    _paint_body(tissue, grid, anatomy)
    _paint_thorax(tissue, grid, anatomy)
    _paint_bowel(tissue, grid, anatomy)
    _paint_ribs(tissue, grid, anatomy)
    _paint_spine(tissue, grid, anatomy)
    _paint_organs(tissue, grid, anatomy)
    _paint_liver(tissue, grid, anatomy)
    return tissue
