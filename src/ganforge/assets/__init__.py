"""Turn trained generators into a curated asset library (images, videos, metadata)."""
