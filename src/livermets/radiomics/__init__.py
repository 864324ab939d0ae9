"""Radiomics per lesion (pyradiomics, through its maintained fork `pyradiomics-bhklab`).

`settings`: the default CT preset and `--params` YAML; `extract`: the features of every lesion
of one CT; `run`: `livermets radiomics` over a cohort (resume, workers, one file per case).
This layer sits beside `evaluate` and `track`: it imports `io`, `labels` and `datasets.common`,
never torch.
"""
