"""Segmentation-free DINO (ViT) embeddings of OME-Zarr plates, per field and per well.

The recipe follows CellPaintSSL (Kim et al. 2025): percentile clipping, an
Otsu foreground test on the DNA channel, 224-pixel crops, the CLS token of a
5-channel ViT, and the mean over a well's kept crops.
"""
