"""Importers for public data layouts (3D-IRCADb, MSD/LiTS, DICOM + DICOM-SEG) and the
generated two-centre, two-time-point cohort."""
