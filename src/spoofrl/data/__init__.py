"""Data: manifests, corpus importers, datasets and augmentation."""
from spoofrl.data.manifest import (BONAFIDE, COLUMNS, LABEL_INDEX, SPOOF, Utterance, read_manifest,
                                   write_manifest)

__all__ = ["BONAFIDE", "SPOOF", "COLUMNS", "LABEL_INDEX", "Utterance", "read_manifest", "write_manifest"]
