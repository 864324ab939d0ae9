"""The generated cohort: two centres, baseline and tp1 CT, liver and lesion ground truth.

`livermets synth` and `generate_cohort` write a cohort that looks like the paper's (Defeudis et
al. 2022): portal-venous abdominal CT of patients with colorectal liver metastases from two
centres with different protocols, each patient at baseline and about 3 months later (tp1).

Model
-----
Each patient is an anatomy described in a *patient frame* (mm, LPS axes: +x patient left, +y
posterior, +z superior; x = y = 0 on the body axis, z = 0 at the top of the right
hemidiaphragm): body outline with subcutaneous fat, abdominal-wall and paraspinal muscles,
psoas, spine with discs and posterior elements, ribs and costal cartilage, lung bases, heart,
aorta, IVC, kidneys (cortex, medulla, sinus fat), spleen, stomach with an air-fluid level,
pancreas, splenic and mesenteric vessels, bowel loops with gas, gallbladder and a liver built as
a smooth union of lobes deformed by low-frequency noise, with portal and hepatic vein trees, fat
reaching into it (umbilical fissure with the ligamentum teres, fissure of the ligamentum
venosum, hilar fat around the portal vein, gallbladder-fossa fat; generator version 2) and
1-10 metastases. A CT samples that anatomy at voxel centres after a rigid *pose*
(patient frame -> scanner LPS), then adds centre-specific enhancement, correlated noise, a
slight in-plane blur and an HU offset. The masks are sampled at the same points, so they lie
exactly on the CT grid and every lesion voxel is a liver voxel.

The physical size never depends on `matrix` or `slices`: the in-plane field of view and the
craniocaudal coverage are drawn per patient, `matrix` sets the pixel size (FOV / matrix) and
`slices`, when given, sets the slice spacing (coverage / slices); by default the slice
spacing is the centre's (A 2.5 mm, B 5 mm) and the slice count follows from the coverage
(about 190-240 mm: from the lung bases to below the kidneys' hila).

Lesions are hypodense with an enhancing rim, some with a necrotic core or calcified spots;
none touches another (each is its own 26-connected component) and all lie inside the liver.
At tp1 each lesion shrinks, grows, stays or vanishes, some get calcified areas, and 0-2 new
lesions may appear; the tp1 anatomy is rotated about z and shifted against baseline.
Patients are generated from `numpy.random.SeedSequence([seed, patient_index])`, so a patient
is the same whatever the cohort size. Patient 1 (synth001) is centre A with >= 3 lesions of
both size groups, patient 2 is centre B with a new lesion at tp1 (progression), patient 3 has
all its lesions vanish (complete response); later patients are drawn (centre A 30%).

On disk (`generate_cohort`)::

    DIR/manifest.csv                 patient_id, center, timepoint, image, liver_mask, ...
    DIR/truth.json                   per-lesion ground truth (see `generate_cohort`)
    DIR/synth001/baseline/ct.nii.gz  int16 HU
    DIR/synth001/baseline/liver.nii.gz    uint8 0/1 (liver incl. lesions and inner vessels)
    DIR/synth001/baseline/lesions.nii.gz  uint8 instance labels 1..K, 0 = background
    DIR/synth001/tp1/...

Splits: the baseline CT of patients with an odd number (synth001, synth003, ...) is
`training`, the other baselines are `valB`, and every tp1 CT is `valTP1`.

Modules: `protocols` (centre protocols, tissue codes, HU), `geometry` (poses, CT grids, shape
primitives), `anatomy` (drawing a patient's anatomy), `liver` (the liver region, its volume,
the vein trees), `fissures` (fat inside the liver's outline), `paint` (the tissue-code map),
`lesions` (lesion shapes, looks, placement, tp1 fate), `plan` (`plan_patient`), `render`
(`render_case`, `generate_case`), `truth` (measured ground truth, `recist_response`) and
`cohort` (`generate_cohort`).
"""

from __future__ import annotations

from livermets.datasets.synth.cohort import GENERATOR_VERSION, CohortSummary, generate_cohort
from livermets.datasets.synth.geometry import Array, Mask, Pose, Vec3
from livermets.datasets.synth.plan import TIMEPOINTS, PatientPlan, plan_patient
from livermets.datasets.synth.protocols import LIVER_TISSUES, PROTOCOLS, CentreProtocol, Tissue
from livermets.datasets.synth.render import SynthCase, generate_case, render_case
from livermets.datasets.synth.truth import SIZE_THRESHOLD_MM, recist_response

__all__ = [
    "GENERATOR_VERSION",
    "LIVER_TISSUES",
    "PROTOCOLS",
    "SIZE_THRESHOLD_MM",
    "TIMEPOINTS",
    "Array",
    "CentreProtocol",
    "CohortSummary",
    "Mask",
    "PatientPlan",
    "Pose",
    "SynthCase",
    "Tissue",
    "Vec3",
    "generate_case",
    "generate_cohort",
    "plan_patient",
    "recist_response",
    "render_case",
]
