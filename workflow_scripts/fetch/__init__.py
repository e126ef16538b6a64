"""The fetch stage: a plate's LoadData, images, illumination functions and
CellProfiler backend from S3, downloaded once, verified and recorded."""
