"""The five Cell Painting stains, in the order the workflow uses by default."""

CELL_PAINTING_CHANNELS: tuple[str, ...] = ("DNA", "AGP", "RNA", "ER", "Mito")
