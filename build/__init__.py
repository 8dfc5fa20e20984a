"""Stage 1 and page rendering: datasets, the class catalog, label proposals, the static site."""
