"""Image QC of a converted plate: per-field metrics, flags, heatmaps, illumination.

QC looks at the pixels as acquired (before any correction), per the seed
article's advice, and never removes anything itself: it marks fields, and
the stages that use fields exclude the marked ones and count them.
"""
