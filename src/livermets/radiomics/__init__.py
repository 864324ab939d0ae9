"""Radiomics per lesion (pyradiomics, through its maintained fork `pyradiomics-bhklab`).

`settings`: the default CT preset and `--params` YAML; `extract`: the features of every lesion
of one CT; `agreement`: ICC(3,1) of predicted vs reference features; `delta`: feature changes
over `track`'s persistent pairs; `run`: `livermets radiomics` over a cohort (resume, workers,
one file per case, shares for job arrays and torchrun). This layer sits above `evaluate` and
`track`: it imports `io`, `labels`, `datasets.common`, `evaluate.matching` (the lesion pairing)
and `infer.shards` (the split of a cohort, as `predict`'s), never torch.
"""
