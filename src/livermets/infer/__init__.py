"""Inference: from a CT to liver and lesion masks on the CT's exact grid."""
