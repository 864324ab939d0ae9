"""pyradiomics settings: the default CT preset, and a user's `--params` YAML checked up front.

The preset (`DEFAULT_PARAMS`, in pyradiomics' own parameter-file layout, so that it can be
written to `radiomics.json` and given back as `--params`):

- **Resampling to 1 x 1 x 1 mm** (`resampledPixelSpacing`), the CT by B-spline
  (`sitkBSpline`), masks by nearest neighbour (pyradiomics' rule). Texture is only comparable
  between CTs on one isotropic grid (IBSI); 1 mm is close to the in-plane spacing of abdominal
  CT (0.6-0.9 mm), so that in-plane detail is kept, and is pyradiomics' own CT example.
- **Fixed bin width of 25 HU** (`binWidth`): HU are absolute units, so a fixed width (not a
  fixed bin count) keeps a grey level the same tissue across CTs and centres (IBSI's advice for
  CT); 25 HU is pyradiomics' default and its CT example's, and the width of most published
  liver-metastasis radiomics.
- **No intensity shift, no normalisation** (`voxelArrayShift` 0, `normalize` false): first-order
  energy is the plain sum of squared HU, as IBSI defines it.
- **Classes**: `shape`, `firstorder`, `glcm`, `glrlm`, `glszm`, `gldm`, `ngtdm`, each with all
  of pyradiomics' non-deprecated features, on the original image only (no LoG or wavelet
  filters: they multiply the feature count by ten and are the user's choice, via `--params`).
- `minimumROIDimensions` 2 (pyradiomics' default): a lesion one voxel thin in two directions
  gets no features and a note.

`--params FILE` replaces the preset entirely (pyradiomics' defaults fill what the file leaves
out, and pyradiomics' defaults do not resample).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import yaml

from livermets.errors import InputError

logger = logging.getLogger(__name__)

#: The feature classes of the preset, in column order.
FEATURE_CLASSES: tuple[str, ...] = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm",
                                    "ngtdm")

#: The default CT preset, in pyradiomics' parameter-file layout (see the module docstring).
DEFAULT_PARAMS: dict[str, Any] = {
    "imageType": {"Original": {}},
    "featureClass": {name: [] for name in FEATURE_CLASSES},
    "setting": {
        "resampledPixelSpacing": [1.0, 1.0, 1.0],
        "interpolator": "sitkBSpline",
        "binWidth": 25,
        "voxelArrayShift": 0,
        "normalize": False,
        "padDistance": 5,
        "minimumROIDimensions": 2,
    },
}


def default_params() -> dict[str, Any]:
    """A copy of `DEFAULT_PARAMS` (callers may change it)."""
    return copy.deepcopy(DEFAULT_PARAMS)


def load_params(path: Path) -> dict[str, Any]:
    """Read a pyradiomics parameter YAML file and check it (`check_params`).

    `InputError` (one line) when the file is missing, is not YAML, is not a mapping, or does
    not follow pyradiomics' schema.
    """
    if not path.is_file():
        raise InputError(f"--params {path}: no such file")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"--params {path} is not readable YAML ({first})") from None
    if not isinstance(params, dict):
        raise InputError(f"--params {path} holds no settings; give a pyradiomics parameter "
                         "file (keys imageType, featureClass, setting)")
    check_params(params, f"--params {path}")
    return params


def check_params(params: dict[str, Any], what: str = "the radiomics settings") -> None:
    """`InputError` unless pyradiomics accepts `params` (its schema, feature and filter names)."""
    try:
        extractor = make_extractor(params)
        # Unknown class or feature names pass the schema: ask each class for its names.
        from radiomics import getFeatureClasses

        classes = getFeatureClasses()
        for name, features in extractor.enabledFeatures.items():
            if name not in classes:
                raise ValueError(f"unknown feature class {name!r}; pyradiomics has "
                                 f"{', '.join(sorted(classes))}")
            known = classes[name].getFeatureNames()
            unknown = [f for f in features or [] if f not in known]
            if unknown:
                raise ValueError(f"unknown {name} feature(s) {', '.join(unknown)}")
    except Exception as error:  # pykwalify's SchemaError, ValueError, ...
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[0] if lines else type(error).__name__
        raise InputError(f"{what} are not valid pyradiomics settings: {detail}") from None


def make_extractor(params: dict[str, Any]) -> Any:
    """A pyradiomics `RadiomicsFeatureExtractor` for `params`, with pyradiomics' own stderr
    output off (its messages go through `logging` under the name 'radiomics') and its
    per-extraction diagnostics off (they are not features)."""
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.CRITICAL + 10)  # its own stderr handler: silent
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)  # schema errors: `check_params`
    logging.getLogger("radiomics").setLevel(
        logging.DEBUG if logging.getLogger().isEnabledFor(logging.DEBUG) else logging.CRITICAL)
    extractor = featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(params))
    extractor.settings["additionalInfo"] = False
    return extractor
