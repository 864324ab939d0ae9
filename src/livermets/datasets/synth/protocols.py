"""Centre protocols and tissue codes: acquisition settings and the HU of each tissue."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class CentreProtocol:
    """Acquisition protocol of one centre: sampling, noise and contrast enhancement (HU).

    Enhancement values are the mean HU of each tissue in the portal-venous phase before the
    patient's own variation; `hu_offset` is a scanner calibration offset added to every voxel.
    """

    name: str
    slice_spacing_mm: float
    fov_range_mm: tuple[float, float]
    noise_sd_hu: float
    hu_offset: float
    blur_mm: float
    delay_s: float
    liver_hu: float
    portal_hu: float
    hepatic_hu: float
    aorta_hu: float
    ivc_hu: float
    spleen_hu: float
    kidney_cortex_hu: float
    kidney_medulla_hu: float


#: Centre A: thinner slices, lower noise, earlier portal phase (bright portal vein and aorta,
#: hepatic veins still filling). Centre B: 5 mm slices, noisier, later phase.
PROTOCOLS: dict[str, CentreProtocol] = {
    "A": CentreProtocol(
        name="A", slice_spacing_mm=2.5, fov_range_mm=(340.0, 400.0), noise_sd_hu=9.0,
        hu_offset=3.0, blur_mm=0.45, delay_s=65.0, liver_hu=106.0, portal_hu=178.0,
        hepatic_hu=138.0, aorta_hu=185.0, ivc_hu=115.0, spleen_hu=122.0,
        kidney_cortex_hu=195.0, kidney_medulla_hu=140.0,
    ),
    "B": CentreProtocol(
        name="B", slice_spacing_mm=5.0, fov_range_mm=(380.0, 440.0), noise_sd_hu=15.0,
        hu_offset=-4.0, blur_mm=0.6, delay_s=80.0, liver_hu=117.0, portal_hu=162.0,
        hepatic_hu=158.0, aorta_hu=152.0, ivc_hu=140.0, spleen_hu=118.0,
        kidney_cortex_hu=172.0, kidney_medulla_hu=160.0,
    ),
}


class Tissue(IntEnum):
    """Tissue codes of the internal label map; each has one mean HU per patient and scan."""

    AIR = 0
    FAT = 1
    VISCERAL_FAT = 2
    MUSCLE = 3
    RIB = 4
    CORTICAL_BONE = 5
    MARROW = 6
    DISC = 7
    CSF = 8
    CARTILAGE = 9
    LUNG = 10
    MYOCARDIUM = 11
    BLOOD = 12
    AORTA = 13
    IVC = 14
    PORTAL = 15
    LIVER = 16
    LIVER_PORTAL = 17
    LIVER_HEPATIC = 18
    SPLEEN = 19
    KIDNEY_CORTEX = 20
    KIDNEY_MEDULLA = 21
    RENAL_SINUS = 22
    URINE = 23
    STOMACH_WALL = 24
    STOMACH_FLUID = 25
    GAS = 26
    BOWEL_WALL = 27
    BOWEL_CONTENT = 28
    PANCREAS = 29
    GALLBLADDER = 30
    TABLE = 31
    TABLE_FOAM = 32


#: Tissues counted as liver in the liver mask (parenchyma and the vessels inside it).
LIVER_TISSUES: tuple[Tissue, ...] = (Tissue.LIVER, Tissue.LIVER_PORTAL, Tissue.LIVER_HEPATIC)

#: HU of tissues that do not depend on contrast timing.
_FIXED_HU: dict[Tissue, float] = {
    Tissue.AIR: -1000.0, Tissue.FAT: -105.0, Tissue.VISCERAL_FAT: -95.0, Tissue.MUSCLE: 52.0,
    Tissue.RIB: 480.0, Tissue.CORTICAL_BONE: 800.0, Tissue.MARROW: 230.0, Tissue.DISC: 85.0,
    Tissue.CSF: 18.0, Tissue.CARTILAGE: 140.0, Tissue.LUNG: -860.0, Tissue.MYOCARDIUM: 100.0,
    Tissue.RENAL_SINUS: -80.0, Tissue.URINE: 12.0, Tissue.STOMACH_WALL: 72.0,
    Tissue.STOMACH_FLUID: 14.0, Tissue.GAS: -985.0, Tissue.BOWEL_WALL: 80.0,
    Tissue.BOWEL_CONTENT: 22.0, Tissue.PANCREAS: 98.0, Tissue.GALLBLADDER: 8.0,
    Tissue.TABLE: 200.0, Tissue.TABLE_FOAM: -920.0,
}


def _tissue_hu(protocol: CentreProtocol, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Mean HU per tissue code for one scan: the protocol plus this patient's and this scan's
    variation (liver +-5 HU, vessels +-10 HU together, as contrast timing varies)."""
    lut = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, hu in _FIXED_HU.items():
        lut[tissue] = hu
    vessels = rng.normal(0.0, 10.0)
    liver = protocol.liver_hu + rng.normal(0.0, 5.0)
    portal = protocol.portal_hu + vessels
    lut[Tissue.LIVER] = liver
    lut[Tissue.LIVER_PORTAL] = lut[Tissue.PORTAL] = portal
    lut[Tissue.LIVER_HEPATIC] = protocol.hepatic_hu + vessels
    lut[Tissue.AORTA] = protocol.aorta_hu + vessels
    lut[Tissue.BLOOD] = protocol.aorta_hu + vessels - 15.0
    lut[Tissue.IVC] = protocol.ivc_hu + vessels
    lut[Tissue.SPLEEN] = protocol.spleen_hu + rng.normal(0.0, 5.0)
    lut[Tissue.KIDNEY_CORTEX] = protocol.kidney_cortex_hu + vessels
    lut[Tissue.KIDNEY_MEDULLA] = protocol.kidney_medulla_hu + vessels
    return lut
