"""Radiomics per lesion (pyradiomics, through its maintained fork `pyradiomics-bhklab`).

`settings`: the default CT preset and `--params` YAML; `extract`: the features of every lesion
of one CT; `agreement`: ICC(3,1) of predicted vs reference features; `delta`: feature changes
over `track`'s persistent pairs; `run`: `livermets radiomics` over a cohort (resume, workers,
one file per case). This layer sits above `evaluate` and `track`: it imports `io`, `labels`,
`datasets.common` and `evaluate.matching` (the lesion pairing), never torch.
"""
