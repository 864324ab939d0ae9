"""The radiomics tests' shared generated cohort (`study`), built once for all of them."""

from tests.radiomics.study_cohort import study  # noqa: F401  (the fixture)
